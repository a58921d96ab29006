"""Broadcast subscriptions on the embedded bus: every subscriber gets its copy, in order, at most once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import pytest_asyncio

from radcommon.messaging import Message
from radcommon.messaging.local import LocalBus


@pytest_asyncio.fixture
async def bus(tmp_path: Path) -> AsyncIterator[LocalBus]:
    local = LocalBus(tmp_path / "bus.db")
    await local.connect()
    yield local
    await local.close()


def event(routing_key: str) -> Message:
    return Message(str(uuid4()), routing_key, b"{}")


async def settled(*lists: list[Message], count: int) -> None:
    for _ in range(100):
        if all(len(received) >= count for received in lists):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"got {[len(r) for r in lists]} of {count}")


async def test_every_subscriber_gets_every_matching_message_in_order_and_a_durable_queue_still_gets_its_own(
        bus: LocalBus) -> None:
    first: list[Message] = []
    second: list[Message] = []
    durable: list[Message] = []

    async def collect_durable(m: Message) -> None:
        durable.append(m)

    await bus.consume("test.work", ["worklist.#"], collect_durable)
    await bus.subscribe(["worklist.item.*.v1"], lambda m: asyncio.sleep(0, first.append(m)))
    await bus.subscribe(["worklist.#"], lambda m: asyncio.sleep(0, second.append(m)))
    sent = [event("worklist.item.changed.v1") for _ in range(20)]
    other = event("identity.user.registered.v1")
    await bus.publish(sent[:5])
    await bus.publish([other, *sent[5:]])

    await settled(first, second, durable, count=20)
    await asyncio.sleep(0.05)
    assert [m.message_id for m in first] == [m.message_id for m in sent]
    assert [m.message_id for m in second] == [m.message_id for m in sent]
    assert [m.message_id for m in durable] == [m.message_id for m in sent]
    assert await bus.depth(bus.unrouted_queue) == 1  # "other": nobody, durable or live, wanted it


async def test_a_message_only_a_subscription_wants_is_not_kept_as_unrouted(bus: LocalBus) -> None:
    received: list[Message] = []
    subscription = await bus.subscribe(["live.#"], lambda m: asyncio.sleep(0, received.append(m)))
    await bus.publish([event("live.thing.v1")])
    await settled(received, count=1)
    assert await bus.depth(bus.unrouted_queue) == 0

    await subscription.close()
    await subscription.close()  # idempotent
    await bus.publish([event("live.thing.v1")])
    await asyncio.sleep(0.05)
    assert len(received) == 1
    assert await bus.depth(bus.unrouted_queue) == 1


async def test_a_failing_handler_loses_that_message_only(bus: LocalBus) -> None:
    received: list[str] = []
    sent = [event("live.thing.v1") for _ in range(3)]

    async def handle(message: Message) -> None:
        if message.message_id == sent[1].message_id:
            raise RuntimeError("boom")
        received.append(message.message_id)

    await bus.subscribe(["#"], handle)
    await bus.publish(sent)
    for _ in range(100):
        if len(received) == 2:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert received == [sent[0].message_id, sent[2].message_id]


async def test_a_subscriber_too_far_behind_loses_the_oldest_messages_not_the_newest(bus: LocalBus) -> None:
    release = asyncio.Event()
    received: list[str] = []

    async def slow(message: Message) -> None:
        await release.wait()
        received.append(message.message_id)

    subscription = await bus.subscribe(["#"], slow)
    subscription._waiting = asyncio.Queue(maxsize=3)  # a small backlog for the test
    sent = [event("live.thing.v1") for _ in range(8)]
    await bus.publish(sent[:1])
    await asyncio.sleep(0.01)  # the first one is being handled, waiting for release
    await bus.publish(sent[1:])
    release.set()
    for _ in range(100):
        if len(received) == 4:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert received == [sent[0].message_id, *(m.message_id for m in sent[-3:])]
    assert subscription.dropped == 4


async def test_closing_the_bus_ends_its_subscriptions(bus: LocalBus) -> None:
    received: list[Message] = []
    subscription = await bus.subscribe(["#"], lambda m: asyncio.sleep(0, received.append(m)))
    await bus.close()
    await subscription.close()
    await bus.connect()
    await bus.publish([event("live.thing.v1")])
    await asyncio.sleep(0.05)
    assert received == []
