"""The live feed's ordering with fakes: backlog then live, gaps filled from worklist, nothing twice, bounded queues."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from gateway.live import Change, ChangesPage, CloseCode, Feed, FeedClosed, LiveHub
from radcommon.auth import Principal
from radcommon.contracts import RoleValues, WorklistItemChangedV1
from radcommon.messaging import Message


def change(sequence: int) -> Change:
    return Change(sequence, f"item-{sequence}", "updated", {"id": f"item-{sequence}", "version": sequence})


class FakeWorklist:
    """What GET /worklist/changes answers: the organisation's committed changes, and the calls made."""

    def __init__(self, newest: int = 0, *, missing: set[int] | None = None) -> None:
        self.committed = [change(n) for n in range(1, newest + 1) if n not in (missing or set())]
        self.calls: list[tuple[str, int, int]] = []

    def commit(self, *sequences: int) -> list[Change]:
        made = [change(n) for n in sequences]
        self.committed.extend(made)
        return made

    async def changes_after(self, token: str, after: int, limit: int) -> ChangesPage:
        self.calls.append((token, after, limit))
        await asyncio.sleep(0)
        newest = max((c.sequence for c in self.committed), default=0)
        return ChangesPage(changes=[c for c in self.committed if c.sequence > after][:limit], last_sequence=newest)


class Client:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def sequences(self) -> list[int | str]:
        return [m["sequence"] if m["type"] == "worklist.changed" else m["type"] for m in self.messages]


def feed_for(worklist: FakeWorklist, client: Client, after: int | None, *, queue_size: int = 100,
             page_size: int = 2) -> Feed:
    return Feed(worklist, client.send, lambda: "the-token", after=after, queue_size=queue_size, page_size=page_size)


@contextmanager
def running(feed: Feed) -> Iterator[asyncio.Task[None]]:
    task = asyncio.create_task(feed.run())
    try:
        yield task
    finally:
        task.cancel()


async def until(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


async def test_the_backlog_comes_in_pages_then_ready_then_what_waited_without_repeats() -> None:
    worklist, client = FakeWorklist(newest=5), Client()
    feed = feed_for(worklist, client, after=2)
    for live in (4, 5, 6):  # published while the feed was reading its backlog; 6 commits now
        feed.offer(change(live))
    worklist.commit(6)

    with running(feed):
        await until(lambda: len(client.messages) == 5)
        feed.offer(change(7))
        await until(lambda: len(client.messages) == 6)

    assert client.sequences == [3, 4, 5, 6, "ready", 7]
    assert client.messages[4] == {"type": "ready", "last_sequence": 6}
    assert client.messages[0] == {"type": "worklist.changed", "sequence": 3, "item_id": "item-3",
                                  "change": "updated", "item": {"id": "item-3", "version": 3}}
    assert [(after, limit) for _, after, limit in worklist.calls] == [(2, 2), (4, 2), (6, 2)]
    assert {token for token, _, _ in worklist.calls} == {"the-token"}


async def test_a_live_change_after_a_gap_waits_for_the_missing_ones_read_from_worklist() -> None:
    worklist, client = FakeWorklist(newest=3), Client()
    feed = feed_for(worklist, client, after=3, page_size=10)
    with running(feed):
        await until(lambda: client.sequences == ["ready"])
        worklist.commit(4, 5, 6)
        feed.offer(change(6))  # 4 and 5 were lost on the way
        await until(lambda: len(client.messages) == 4)
        feed.offer(change(4))  # late copies of what was sent are dropped
        feed.offer(change(5))
        worklist.commit(7)
        feed.offer(change(7))
        await until(lambda: len(client.messages) == 5)
        await asyncio.sleep(0.02)
    assert client.sequences == ["ready", 4, 5, 6, 7]
    assert [after for _, after, _ in worklist.calls] == [3, 3]


async def test_without_after_only_what_comes_from_now_is_sent() -> None:
    worklist, client = FakeWorklist(newest=40), Client()
    feed = feed_for(worklist, client, after=None)
    with running(feed):
        await until(lambda: client.sequences == ["ready"])
        feed.offer(change(41))
        await until(lambda: len(client.messages) == 2)
    assert client.messages[0] == {"type": "ready", "last_sequence": 40}
    assert client.sequences == ["ready", 41]
    assert [limit for _, _, limit in worklist.calls] == [1]


async def test_an_after_beyond_the_organisations_newest_gets_ready_with_the_real_newest() -> None:
    worklist, client = FakeWorklist(newest=4), Client()
    feed = feed_for(worklist, client, after=90)
    with running(feed):
        await until(lambda: client.sequences == ["ready"])
        feed.offer(change(5))
        await until(lambda: len(client.messages) == 2)
    assert client.messages == [{"type": "ready", "last_sequence": 4}, change(5).message()]


async def test_changes_lost_by_the_bus_are_read_again_on_resync() -> None:
    worklist, client = FakeWorklist(newest=2), Client()
    feed = feed_for(worklist, client, after=2)
    with running(feed):
        await until(lambda: client.sequences == ["ready"])
        worklist.commit(3, 4, 5)  # published while the subscription was down: never offered
        feed.resync()
        feed.resync()  # a second request while one is pending is the same request
        await until(lambda: len(client.messages) == 4)
        await asyncio.sleep(0.02)
    assert client.sequences == ["ready", 3, 4, 5]
    assert [after for _, after, _ in worklist.calls] == [2, 2, 4]


async def test_a_gap_worklist_cannot_fill_ends_the_feed_rather_than_skip_changes() -> None:
    worklist, client = FakeWorklist(newest=1), Client()
    feed = feed_for(worklist, client, after=1)
    feed.offer(change(3))  # 2 is nowhere
    with pytest.raises(FeedClosed) as closed:
        await asyncio.wait_for(feed.run(), 2)
    assert closed.value.code == CloseCode.TRY_AGAIN_LATER
    assert client.sequences == ["ready"]


async def test_a_feed_whose_queue_overflows_ends_fell_behind_and_lets_its_queue_go() -> None:
    worklist, client = FakeWorklist(newest=0), Client()
    feed = feed_for(worklist, client, after=0, queue_size=3)
    worklist.commit(1, 2, 3, 4, 5)
    for n in range(1, 6):
        feed.offer(change(n))
    assert feed._waiting.qsize() == 1
    with pytest.raises(FeedClosed) as closed:
        await asyncio.wait_for(feed.run(), 2)
    assert closed.value.code == CloseCode.FELL_BEHIND
    # the backlog went out before the feed noticed; nothing from the dropped queue did twice
    assert client.sequences == [1, 2, 3, 4, 5, "ready"]


async def test_worklist_refusing_the_token_ends_the_feed_with_its_code() -> None:
    class Refusing(FakeWorklist):
        async def changes_after(self, token: str, after: int, limit: int) -> ChangesPage:
            raise FeedClosed(CloseCode.UNAUTHENTICATED, "worklist refused the token")

    feed = feed_for(Refusing(), Client(), after=0)
    with pytest.raises(FeedClosed) as closed:
        await feed.run()
    assert closed.value.code == CloseCode.UNAUTHENTICATED


# --- the hub ----------------------------------------------------------------------------------------------------

def principal(organization_id: UUID, user_id: UUID | None = None) -> Principal:
    return Principal(user_id=user_id or uuid4(), organization_id=organization_id,
                     roles=frozenset({RoleValues.RADIOLOGIST}), session_id=uuid4(), email="u@telerad.test",
                     amr=("pwd",), token_id="t", expires_at=datetime.now(UTC) + timedelta(minutes=5))


def published(organization_id: UUID, sequence: int) -> Message:
    event = WorklistItemChangedV1(organization_id=organization_id, sequence=sequence, item_id=uuid4(),
                                  change="created", item={"status": "received"})
    return Message(str(event.event_id), event.routing_key, event.model_dump_json().encode())


class Recorder(Feed):
    def __init__(self) -> None:
        super().__init__(FakeWorklist(), Client().send, lambda: "", after=0, queue_size=10)
        self.offered: list[int] = []
        self.resyncs = 0

    def offer(self, change: Change) -> None:
        self.offered.append(change.sequence)

    def resync(self) -> None:
        self.resyncs += 1


class OneSubscriptionBus:
    def __init__(self) -> None:
        self.subscriptions: list[tuple[list[str], Any]] = []

    async def subscribe(self, bindings: list[str], handler: Any, *, on_resubscribed: Any = None) -> Any:
        self.subscriptions.append((bindings, on_resubscribed))

        class Closing:
            async def close(self) -> None:
                pass
        return Closing()


async def test_the_hub_subscribes_once_and_hands_each_change_to_its_organisations_feeds_only() -> None:
    bus = OneSubscriptionBus()
    hub = LiveHub(bus, max_connections=10, max_connections_per_user=5)  # type: ignore[arg-type]
    await hub.start()
    org_a, org_b = uuid4(), uuid4()
    a1, a2, b1 = Recorder(), Recorder(), Recorder()
    with hub.joined(principal(org_a), a1), hub.joined(principal(org_a), a2), hub.joined(principal(org_b), b1):
        await hub.deliver(published(org_a, 1))
        await hub.deliver(published(org_b, 1))
        await hub.deliver(published(org_a, 2))
        await hub.deliver(Message("x", WorklistItemChangedV1.routing_key, b'{"not": "a change"}'))
        await hub.resync_all()
    await hub.deliver(published(org_a, 3))  # the feeds have left
    assert (a1.offered, a2.offered, b1.offered) == ([1, 2], [1, 2], [1])
    assert (a1.resyncs, a2.resyncs, b1.resyncs) == (1, 1, 1)
    assert [bindings for bindings, _ in bus.subscriptions] == [["worklist.item.changed.v1"]]
    assert bus.subscriptions[0][1] == hub.resync_all
    await hub.stop()


async def test_the_hub_caps_connections_per_user_and_in_all() -> None:
    hub = LiveHub(OneSubscriptionBus(), max_connections=2, max_connections_per_user=1)  # type: ignore[arg-type]
    user = principal(uuid4())
    with hub.connection(), hub.joined(user, Recorder()):
        with pytest.raises(FeedClosed) as per_user, hub.connection(), hub.joined(user, Recorder()):
            pass
        assert per_user.value.code == CloseCode.TOO_MANY_CONNECTIONS
        with hub.connection(), pytest.raises(FeedClosed) as in_all, hub.connection():
            pass
        assert in_all.value.code == CloseCode.TRY_AGAIN_LATER
    assert hub.connections == 0
    with hub.connection(), hub.joined(user, Recorder()):  # all counted down again
        assert hub.connections == 1
