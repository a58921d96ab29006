"""The bus semantics of radcommon.messaging.bus, the same tests against both transports (embedded and RabbitMQ)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import pytest
import pytest_asyncio

from radcommon.db import Database
from radcommon.messaging.bus import (
    ATTEMPT_HEADER,
    ERROR_HEADER,
    REDELIVERY_LIMIT,
    Message,
    PermanentFailure,
    RetryPolicy,
)
from radcommon.messaging.local import LocalBus

pytestmark = pytest.mark.asyncio

RETRY = RetryPolicy(attempts=3, base_delay=0.05)
WORKER = Path(__file__).with_name("bus_crash_worker.py")
T = TypeVar("T")


def _load_worker() -> Any:
    spec = importlib.util.spec_from_file_location("bus_crash_worker", WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


effects = _load_worker()


class Transport:
    """Opens buses that share one store: the same SQLite file, or the same (test-only) RabbitMQ exchange."""

    kind: str

    async def open(self, role: str = "bus") -> Any:
        raise NotImplementedError

    def queue(self, purpose: str) -> str:
        raise NotImplementedError

    def worker_config(self) -> dict[str, Any]:
        raise NotImplementedError


class LocalTransport(Transport):
    kind = "local"

    def __init__(self, path: Path, opened: list[Any]) -> None:
        self.path = path
        self.opened = opened

    async def open(self, role: str = "bus") -> LocalBus:
        bus = LocalBus(self.path, RETRY)
        await bus.connect()
        self.opened.append(bus)
        return bus

    def queue(self, purpose: str) -> str:
        return f"test.{purpose}"

    def worker_config(self) -> dict[str, Any]:
        return {"transport": "local", "path": str(self.path)}


class RabbitTransport(Transport):
    kind = "rabbitmq"

    def __init__(self, namespace: Any, make: Callable[..., Awaitable[Any]]) -> None:
        self.namespace = namespace
        self.make = make

    async def open(self, role: str = "bus") -> Any:
        return await self.make(retry=RETRY, role=role)

    def queue(self, purpose: str) -> str:
        return str(self.namespace.queue(purpose))

    def worker_config(self) -> dict[str, Any]:
        return {"transport": "rabbitmq", "url": self.namespace.url("worker"), "exchange": self.namespace.exchange}


@pytest_asyncio.fixture
async def local_buses() -> AsyncIterator[list[Any]]:
    opened: list[Any] = []
    yield opened
    for bus in opened:
        await bus.close()


@pytest.fixture(params=["local", "rabbitmq"])
def transport(request: pytest.FixtureRequest, tmp_path: Path) -> Transport:
    if request.param == "local":
        return LocalTransport(tmp_path / "bus.db", request.getfixturevalue("local_buses"))
    return RabbitTransport(request.getfixturevalue("broker_namespace"), request.getfixturevalue("rabbit_bus_factory"))


@pytest_asyncio.fixture
async def db(fresh_database_url: str) -> AsyncIterator[Database]:
    database = Database(fresh_database_url)
    await effects.create_tables(database)
    yield database
    await database.dispose()


async def eventually(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout: float = 20.0) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if ok(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still {value!r} after {timeout} s")
        await asyncio.sleep(0.05)


def event(routing_key: str = "study.received.v1", **headers: str) -> Message:
    event_id = str(uuid4())
    return Message(event_id, routing_key, json.dumps({"event_id": event_id}).encode(), dict(headers))


async def test_published_messages_arrive_in_order_intact_and_unroutable_ones_are_kept(transport: Transport) -> None:
    bus = await transport.open()
    queue = transport.queue("orders")
    received: list[Message] = []

    async def handle(message: Message) -> None:
        received.append(message)

    await bus.consume(queue, ["orders.*.v1", "billing.#"], handle)
    sent = [event("orders.created.v1", traceparent=f"00-{i:032x}-{i:016x}-01", tenant="org-1") for i in range(100)]
    sent.append(event("billing.invoice.issued.v1", traceparent="00-ff"))
    await bus.publish(sent[:1])
    await bus.publish(sent[1:])

    await eventually(lambda: asyncio.sleep(0, len(received)), lambda n: n >= len(sent))
    assert [m.message_id for m in received] == [m.message_id for m in sent]
    for got, want in zip(received, sent, strict=True):
        assert (got.routing_key, got.body) == (want.routing_key, want.body)
        assert got.headers == {**want.headers, ATTEMPT_HEADER: "1"}

    assert await bus.depth(bus.unrouted_queue) == 0
    await bus.publish([event("nobody.listens.v1")])
    await eventually(lambda: bus.depth(bus.unrouted_queue), lambda n: n == 1)
    await asyncio.sleep(0.2)
    assert len(received) == len(sent)
    assert await bus.depth(queue) == 0
    assert await bus.ping()
    await bus.close()
    assert not await bus.ping()


async def test_an_event_whose_consumer_died_before_acking_is_delivered_again_and_the_inbox_drops_it(
        transport: Transport, db: Database, fresh_database_url: str) -> None:
    queue, bindings = transport.queue("crashing"), ["study.received.v1"]
    publisher = await transport.open("publisher")
    await publisher.declare(queue, bindings)
    crashing = event()
    await publisher.publish([crashing])
    if transport.kind == "local":
        await publisher.close()  # one process owns the SQLite file at a time

    config = {**transport.worker_config(), "queue": queue, "bindings": bindings, "database_url": fresh_database_url,
              "attempts": RETRY.attempts, "base_delay": RETRY.base_delay}
    worker = await asyncio.create_subprocess_exec(sys.executable, str(WORKER), json.dumps(config),
                                                  stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(worker.communicate(), 60)
    assert worker.returncode == effects.EXIT_CRASHED, stderr.decode()
    assert await effects.scalar(db, "SELECT count(*) FROM effects") == 1

    consumer = await transport.open("consumer")
    first_time: dict[str, bool] = {}

    async def handle(message: Message) -> None:
        await effects.record_delivery(db, queue, message, "test")
        first_time[message.message_id] = await effects.apply_effect(db, queue, message)

    await consumer.consume(queue, bindings, handle)
    marker = event()  # handled strictly after the redelivered event was settled
    await consumer.publish([marker])
    await eventually(lambda: asyncio.sleep(0, dict(first_time)), lambda seen: marker.message_id in seen)

    assert first_time == {crashing.message_id: False, marker.message_id: True}
    assert await effects.scalar(
        db, f"SELECT string_agg(process, ',' ORDER BY id) FROM deliveries WHERE event_id = '{crashing.message_id}'"
    ) == "worker,test"
    assert await effects.scalar(db, f"SELECT count(*) FROM effects WHERE event_id = '{crashing.message_id}'") == 1
    assert await effects.scalar(db, "SELECT count(*) FROM inbox") == 2
    await eventually(lambda: consumer.depth(queue), lambda n: n == 0)


async def test_a_thousand_events_survive_a_cut_connection_none_lost_none_duplicated(
        transport: Transport, db: Database) -> None:
    queue, bindings = transport.queue("stream"), ["study.#"]
    events = [event() for _ in range(1000)]
    deliveries: Counter[str] = Counter()

    async def handle(message: Message) -> None:
        deliveries[message.message_id] += 1
        await effects.apply_effect(db, queue, message)

    if isinstance(transport, LocalTransport):
        # Embedded mode: one bus object per process for both sides; the "cut" is that object going away.
        buses = {"bus": await transport.open()}
        await buses["bus"].consume(queue, bindings, handle)

        def publisher() -> Any:
            return buses["bus"]

        async def cut() -> int:
            await buses["bus"].close()
            await asyncio.sleep(0.3)  # publishes fail meanwhile
            reopened = await transport.open()
            await reopened.consume(queue, bindings, handle)
            buses["bus"] = reopened
            return 1
    else:
        assert isinstance(transport, RabbitTransport)
        namespace = transport.namespace
        consumer = await transport.open("consumer")
        await consumer.consume(queue, bindings, handle)
        publishing = await transport.open("publisher")
        connections = await asyncio.to_thread(namespace.connections)
        assert len(connections) == 2

        def publisher() -> Any:
            return publishing

        async def cut() -> int:
            return int(await namespace.cut_connections(connections))

    failed_publishes = 0
    cutting: asyncio.Task[int] | None = None
    for start in range(0, len(events), 10):
        if start == 300:
            cutting = asyncio.create_task(cut())
        while True:  # what the outbox relay does: publish the batch again until it is confirmed
            try:
                await asyncio.wait_for(publisher().publish(events[start:start + 10]), 10)
                break
            except Exception:
                failed_publishes += 1
                await asyncio.sleep(0.05)
        if cutting is not None and not cutting.done():
            if start >= 700:
                await cutting  # the last 300 are published after the cut, whenever it lands
            else:
                await asyncio.sleep(0.05)
    assert cutting is not None
    assert await cutting == (1 if transport.kind == "local" else 2), "the connections were not cut"
    if isinstance(transport, RabbitTransport):
        assert publishing.reconnects >= 1 and consumer.reconnects >= 1

    await eventually(lambda: effects.scalar(db, "SELECT count(DISTINCT event_id) FROM effects"),
                     lambda n: n == len(events), timeout=40)
    await eventually(lambda: publisher().depth(queue), lambda n: n == 0)
    await asyncio.sleep(0.3)  # anything still to come would be a duplicate delivery; let it show

    effect_ids = await effects.scalar(db, "SELECT array_agg(event_id) FROM effects")
    assert len(effect_ids) == len(events), "an event had its effect twice"
    assert set(effect_ids) == {e.message_id for e in events}
    assert set(deliveries) == {e.message_id for e in events}
    duplicates = sum(deliveries.values()) - len(events)
    print(f"\n[{transport.kind}] 1000 events: {sum(deliveries.values())} deliveries ({duplicates} duplicates, "
          f"dropped by the inbox), {len(effect_ids)} effects, {failed_publishes} failed publishes retried")


async def test_a_poison_message_is_dead_lettered_after_every_attempt_and_replayed_once_fixed(
        transport: Transport) -> None:
    bus = await transport.open()
    queue = transport.queue("poisoned")
    poison = event("report.finalized.v1", traceparent="00-abc")
    later = [event("report.finalized.v1") for _ in range(3)]
    attempts: defaultdict[str, list[str]] = defaultdict(list)
    handled: list[str] = []
    fixed = False

    async def handle(message: Message) -> None:
        attempts[message.message_id].append(message.headers[ATTEMPT_HEADER])
        if message.message_id == poison.message_id and not fixed:
            raise ValueError(f"cannot handle {message.message_id}")
        handled.append(message.message_id)

    await bus.consume(queue, ["report.#"], handle)
    await bus.publish([poison])
    await bus.publish(later)

    [letter] = await eventually(lambda: bus.dead_letters(queue), lambda letters: len(letters) == 1)
    await eventually(lambda: asyncio.sleep(0, list(handled)), lambda ids: len(ids) == len(later))
    assert handled == [m.message_id for m in later]
    assert attempts[poison.message_id] == ["1", "2", "3"]
    assert (letter.queue, letter.attempts) == (queue, RETRY.attempts)
    assert letter.error == f"ValueError: cannot handle {poison.message_id}"
    assert letter.message.message_id == poison.message_id
    assert (letter.message.routing_key, letter.message.body) == (poison.routing_key, poison.body)
    assert letter.message.headers == {"traceparent": "00-abc", ERROR_HEADER: letter.error}
    assert letter.dead_at is not None

    await asyncio.sleep(RETRY.delay(RETRY.attempts) * 4)
    assert len(attempts[poison.message_id]) == RETRY.attempts, "a dead letter was delivered again"
    assert [d.message.message_id for d in await bus.dead_letters(queue)] == [poison.message_id], "listing removed it"

    fixed = True
    assert await bus.replay_dead_letters(queue) == 1
    await eventually(lambda: asyncio.sleep(0, list(handled)), lambda ids: poison.message_id in ids)
    assert attempts[poison.message_id] == ["1", "2", "3", "1"]
    assert await bus.dead_letters(queue) == []
    await eventually(lambda: bus.depth(queue), lambda n: n == 0)


async def test_a_permanent_failure_is_dead_lettered_at_once_and_dead_letters_replay_selectively(
        transport: Transport) -> None:
    bus = await transport.open()
    queue = transport.queue("undecodable")
    broken = [event("report.drafted.v1"), event("report.drafted.v1")]
    fine = event("report.drafted.v1")
    deliveries: Counter[str] = Counter()
    handled: list[str] = []
    still_broken = {m.message_id for m in broken}

    async def handle(message: Message) -> None:
        deliveries[message.message_id] += 1
        if message.message_id in still_broken:
            raise PermanentFailure(f"undecodable {message.message_id}")
        handled.append(message.message_id)

    await bus.consume(queue, ["report.*.v1"], handle)
    await bus.publish([broken[0], fine, broken[1]])

    letters = await eventually(lambda: bus.dead_letters(queue), lambda letters: len(letters) == 2)
    assert [d.message.message_id for d in letters] == [m.message_id for m in broken]
    assert [(d.attempts, d.error) for d in letters] == [(1, f"PermanentFailure: undecodable {m.message_id}")
                                                         for m in broken]
    await eventually(lambda: asyncio.sleep(0, list(handled)), lambda ids: ids == [fine.message_id])
    await asyncio.sleep(RETRY.delay(RETRY.attempts) * 4)
    assert deliveries == {m.message_id: 1 for m in [*broken, fine]}

    assert await bus.replay_dead_letters(queue, []) == 0
    assert await bus.replay_dead_letters(queue, [str(uuid4())]) == 0
    still_broken.clear()
    assert await bus.replay_dead_letters(queue, [broken[1].message_id]) == 1
    await eventually(lambda: asyncio.sleep(0, list(handled)), lambda ids: broken[1].message_id in ids)
    assert [d.message.message_id for d in await bus.dead_letters(queue)] == [broken[0].message_id]
    assert deliveries[broken[0].message_id] == 1


async def test_dead_letters_are_listed_in_the_order_they_died_whatever_order_the_queue_holds_them(
        rabbit_bus_factory: Callable[..., Awaitable[Any]], broker_namespace: Any) -> None:
    """A quorum queue may hand a letter given back by one listing behind a newer one: the listing sorts."""
    import aio_pika

    from radcommon.messaging.bus import dead_letter_queue
    from radcommon.messaging.rabbitmq import DEAD_AT_HEADER

    bus = await rabbit_bus_factory(retry=RETRY)
    queue = str(broker_namespace.queue("reordered"))
    await bus.declare(queue, ["report.*.v1"])
    older, newer = event("report.drafted.v1"), event("report.drafted.v1")
    times = {older.message_id: "2026-11-23T10:00:00.000001+00:00", newer.message_id: "2026-11-23T10:00:00.000002+00:00"}
    for message in [newer, older]:  # the queue holds the newer one first
        await bus.channel.default_exchange.publish(aio_pika.Message(
            message.body, message_id=message.message_id, type=message.routing_key,
            headers={ERROR_HEADER: "PermanentFailure: x", ATTEMPT_HEADER: "1",
                     DEAD_AT_HEADER: times[message.message_id]}),
            routing_key=dead_letter_queue(queue))

    letters = await eventually(lambda: bus.dead_letters(queue), lambda letters: len(letters) == 2)
    assert [d.message.message_id for d in letters] == [older.message_id, newer.message_id]
    assert [d.dead_at.isoformat() if d.dead_at else None for d in letters] == [times[older.message_id],
                                                                                 times[newer.message_id]]
    assert all(DEAD_AT_HEADER not in d.message.headers for d in letters)


async def test_a_message_that_takes_down_every_consumer_is_dead_lettered_after_the_redelivery_limit(
        transport: Transport) -> None:
    queue, bindings = transport.queue("killer"), ["study.received.v1"]
    killer = event()
    publisher = await transport.open("publisher")
    await publisher.declare(queue, bindings)
    await publisher.publish([killer])
    await publisher.close()
    for _ in range(REDELIVERY_LIMIT + 1):
        consumer = await transport.open("consumer")
        started = asyncio.Event()

        async def hang(message: Message, started: asyncio.Event = started) -> None:
            started.set()
            await asyncio.Event().wait()  # the process "dies" here: the bus is closed before any ack

        await consumer.consume(queue, bindings, hang)
        await asyncio.wait_for(started.wait(), 20)
        await consumer.close()
    inspector = await transport.open("inspector")
    letters = await eventually(lambda: inspector.dead_letters(queue), lambda found: len(found) == 1)
    assert letters[0].message.message_id == killer.message_id
    assert await inspector.depth(queue) == 0
    await inspector.close()
