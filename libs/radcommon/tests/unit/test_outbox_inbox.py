import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from uuid import uuid4

import pytest
import sqlalchemy as sa

from radcommon.consumer import EventConsumer
from radcommon.contracts import StudyReceivedV1, StudyUpdatedV1
from radcommon.db import Database
from radcommon.inbox import inbox_table
from radcommon.messaging import Message, PermanentFailure
from radcommon.messaging.local import LocalBus
from radcommon.outbox import OutboxRelay, metadata, outbox_table
from radcommon.uow import SqlUnitOfWork

ORG = uuid4()
effects = sa.Table("effects", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                   sa.Column("event_id", sa.String(36)))


def study(uid: str = "1.2.3", instances: int = 1) -> StudyReceivedV1:
    return StudyReceivedV1(organization_id=ORG, study_instance_uid=uid, number_of_series=1,
                           number_of_instances=instances)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'service.db'}")
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.run_sync(effects.metadata.create_all)
    yield database
    await database.dispose()


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[LocalBus]:
    local = LocalBus(tmp_path / "bus.db")
    await local.connect()
    yield local
    await local.close()


async def pending(db: Database) -> int:
    return await OutboxRelay(db, None).pending()  # type: ignore[arg-type]


async def test_events_are_written_only_when_the_state_commits(db: Database) -> None:
    async with SqlUnitOfWork(db) as uow:
        uow.publish(study())
    assert await pending(db) == 0
    async with SqlUnitOfWork(db) as uow:
        uow.publish(study())
        await uow.commit()
    assert await pending(db) == 1
    assert db.outbox_written.is_set()


async def test_the_relay_publishes_in_order_and_marks_rows_sent(db: Database, bus: LocalBus) -> None:
    await bus.declare("probe", ["#"])
    sent = [study(instances=n) for n in range(1, 6)]
    for event in sent:
        async with SqlUnitOfWork(db) as uow:
            uow.publish(event)
            await uow.commit()
    relay = OutboxRelay(db, bus, batch=3)
    assert await relay.publish_pending() == 3
    assert await relay.publish_pending() == 2
    assert await relay.publish_pending() == 0
    received: list[str] = []

    async def collect(message: Message) -> None:
        received.append(message.message_id)

    await bus.consume("probe", ["#"], collect)
    for _ in range(50):
        if len(received) == 5:
            break
        await asyncio.sleep(0.02)
    assert received == [str(e.event_id) for e in sent]


class BrokenBus:
    async def publish(self, messages: Sequence[Message]) -> None:
        raise ConnectionError("broker away")


async def test_a_failed_publish_leaves_the_rows_pending(db: Database) -> None:
    async with SqlUnitOfWork(db) as uow:
        uow.publish(study())
        await uow.commit()
    with pytest.raises(ConnectionError):
        await OutboxRelay(db, BrokenBus()).publish_pending()  # type: ignore[arg-type]
    assert await pending(db) == 1


async def record_effect(event: StudyReceivedV1, uow: SqlUnitOfWork) -> None:
    await uow.session.execute(sa.insert(effects).values(event_id=str(event.event_id)))


def consumer(db: Database, *handlers: object) -> EventConsumer:
    return EventConsumer("probe.events", {StudyReceivedV1: list(handlers)}, lambda: SqlUnitOfWork(db))  # type: ignore[list-item]


def as_message(event: StudyReceivedV1) -> Message:
    return Message(str(event.event_id), event.routing_key, event.model_dump_json().encode())


async def count(db: Database, table: sa.Table) -> int:
    async with db.session() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


async def test_a_redelivered_event_has_its_effect_once(db: Database) -> None:
    handle = consumer(db, record_effect)
    message = as_message(study())
    await handle(message)
    await handle(message)
    assert await count(db, effects) == 1
    assert await count(db, inbox_table) == 1


async def test_a_failing_handler_commits_nothing_so_the_retry_is_not_dropped(db: Database) -> None:
    calls = 0

    async def flaky(event: StudyReceivedV1, uow: SqlUnitOfWork) -> None:
        nonlocal calls
        calls += 1
        await record_effect(event, uow)
        if calls == 1:
            raise RuntimeError("database hiccup")

    handle = consumer(db, flaky)
    message = as_message(study())
    with pytest.raises(RuntimeError):
        await handle(message)
    assert await count(db, effects) == 0 and await count(db, inbox_table) == 0
    await handle(message)
    assert await count(db, effects) == 1


async def test_an_undecodable_message_is_a_permanent_failure(db: Database) -> None:
    handle = consumer(db, record_effect)
    with pytest.raises(PermanentFailure):
        await handle(Message(str(uuid4()), StudyReceivedV1.routing_key, b"{not json"))
    with pytest.raises(PermanentFailure):
        await handle(Message(str(uuid4()), "someone.thing.happened.v1", b"{}"))


async def test_events_of_other_types_are_routed_to_their_own_handlers(db: Database) -> None:
    seen: list[str] = []

    async def on_received(event: StudyReceivedV1, uow: SqlUnitOfWork) -> None:
        seen.append("received")

    async def on_updated(event: StudyUpdatedV1, uow: SqlUnitOfWork) -> None:
        seen.append("updated")

    handle = EventConsumer("probe.events", {StudyReceivedV1: [on_received], StudyUpdatedV1: [on_updated]},
                           lambda: SqlUnitOfWork(db))
    updated = StudyUpdatedV1(organization_id=ORG, study_instance_uid="1.2", number_of_series=1, number_of_instances=3)
    await handle(as_message(study()))
    await handle(Message(str(updated.event_id), updated.routing_key, updated.model_dump_json().encode()))
    assert seen == ["received", "updated"]
    assert sorted(handle.bindings) == sorted([StudyReceivedV1.routing_key, StudyUpdatedV1.routing_key])


async def test_outbox_rows_carry_the_routing_key_and_the_aggregate(db: Database) -> None:
    event = study(uid="9.8.7")
    async with SqlUnitOfWork(db) as uow:
        uow.publish(event)
        await uow.commit()
    async with db.session() as session:
        row = (await session.execute(sa.select(outbox_table))).one()
    assert (row.event_id, row.routing_key, row.aggregate_id) == (str(event.event_id), event.routing_key, "9.8.7")
