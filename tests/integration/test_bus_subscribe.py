"""Broadcast subscriptions (Bus.subscribe) on both transports: every subscriber, in order, at most once, re-created
after a lost connection."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import aio_pika
import aiormq
import pytest
import pytest_asyncio

from radcommon.messaging.bus import Message, RetryPolicy
from radcommon.messaging.local import LocalBus

pytestmark = pytest.mark.asyncio

RETRY = RetryPolicy(attempts=3, base_delay=0.05)
T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout: float = 20.0) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if ok(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still {value!r} after {timeout} s")
        await asyncio.sleep(0.05)


def event(routing_key: str = "worklist.item.changed.v1") -> Message:
    event_id = str(uuid4())
    return Message(event_id, routing_key, json.dumps({"event_id": event_id}).encode(), {"tenant": "org-1"})


@pytest_asyncio.fixture
async def local_bus(tmp_path: Path) -> AsyncIterator[LocalBus]:
    bus = LocalBus(tmp_path / "bus.db", RETRY)
    await bus.connect()
    yield bus
    await bus.close()


@pytest.fixture(params=["local", "rabbitmq"])
def open_bus(request: pytest.FixtureRequest) -> Callable[[str], Awaitable[Any]]:
    """``await open_bus(role)``: embedded mode has one bus per process, so every role gets the same one; on
    RabbitMQ each role is a connection of its own, as another replica would be."""
    if request.param == "local":
        bus = request.getfixturevalue("local_bus")

        async def same(role: str) -> Any:
            return bus

        return same
    make = request.getfixturevalue("rabbit_bus_factory")
    return lambda role: make(retry=RETRY, role=role)  # type: ignore[no-any-return]


def collector() -> tuple[list[Message], Callable[[Message], Awaitable[None]]]:
    received: list[Message] = []

    async def handle(message: Message) -> None:
        received.append(message)

    return received, handle


async def test_every_replica_gets_every_change_in_order_while_a_durable_queue_shares_them_once(
        open_bus: Callable[[str], Awaitable[Any]], request: pytest.FixtureRequest) -> None:
    replicas = [await open_bus("replica-a"), await open_bus("replica-b")]
    publisher = await open_bus("publisher")
    queue = (request.getfixturevalue("broker_namespace").queue("work")
             if "rabbitmq" in request.node.callspec.id else "test.work")
    live = [collector() for _ in replicas]
    subscriptions = [await bus.subscribe(["worklist.item.*.v1"], handle)
                     for bus, (_, handle) in zip(replicas, live, strict=True)]
    durable, handle_durable = collector()
    await replicas[0].consume(queue, ["worklist.#"], handle_durable)

    sent = [event() for _ in range(200)]
    for start in range(0, len(sent), 20):
        await publisher.publish(sent[start:start + 20])
    await publisher.publish([event("worklist.study.assigned.v1")])  # durable only: no subscription binds it

    for received, _ in live:
        await eventually(lambda r=received: asyncio.sleep(0, len(r)), lambda n: n >= len(sent))  # type: ignore[misc]
    await eventually(lambda: asyncio.sleep(0, len(durable)), lambda n: n >= len(sent) + 1)
    await asyncio.sleep(0.3)
    for received, _ in live:
        assert [m.message_id for m in received] == [m.message_id for m in sent]
        assert all(m.body == s.body and m.headers["tenant"] == "org-1" for m, s in zip(received, sent, strict=True))
    assert [m.message_id for m in durable][:len(sent)] == [m.message_id for m in sent]
    assert len(durable) == len(sent) + 1

    await subscriptions[0].close()
    later = event()
    await publisher.publish([later])
    await eventually(lambda: asyncio.sleep(0, live[1][0][-1].message_id), lambda last: last == later.message_id)
    await asyncio.sleep(0.2)
    assert live[0][0][-1].message_id == sent[-1].message_id, "a closed subscription still received"


async def test_a_change_only_live_views_want_is_routed_not_kept_as_unrouted(
        open_bus: Callable[[str], Awaitable[Any]]) -> None:
    bus = await open_bus("bus")
    received, handle = collector()
    await bus.subscribe(["live.only.#"], handle)
    await bus.publish([event("live.only.v1")])
    await eventually(lambda: asyncio.sleep(0, len(received)), lambda n: n == 1)
    await bus.publish([event("nobody.listens.v1")])
    await eventually(lambda: bus.depth(bus.unrouted_queue), lambda n: n == 1)


async def test_a_rabbitmq_subscription_is_a_server_named_exclusive_queue_gone_when_closed(
        rabbit_bus_factory: Callable[..., Awaitable[Any]], amqp_url: str, broker_namespace: Any) -> None:
    bus = await rabbit_bus_factory(retry=RETRY)
    _, handle = collector()
    subscription = await bus.subscribe(["live.#"], handle)
    name = subscription.queue
    assert name is not None and name.startswith("amq.gen-")

    connection = await aio_pika.connect(amqp_url)
    try:
        async with connection.channel() as channel:
            with pytest.raises(aiormq.exceptions.ChannelLockedResource):  # exclusive to the bus's connection
                await channel.declare_queue(name, passive=True)
        await subscription.close()
        async with connection.channel() as channel:
            with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):  # auto-deleted
                await channel.declare_queue(name, passive=True)
    finally:
        await connection.close()


async def test_a_rabbitmq_subscription_comes_back_after_a_cut_connection_and_says_so(
        rabbit_bus_factory: Callable[..., Awaitable[Any]], broker_namespace: Any) -> None:
    subscriber = await rabbit_bus_factory(retry=RETRY, role="subscriber")
    publisher = await rabbit_bus_factory(retry=RETRY, role="publisher")
    received, handle = collector()
    resubscribed = asyncio.Event()

    async def on_resubscribed() -> None:
        resubscribed.set()

    subscription = await subscriber.subscribe(["worklist.#"], handle, on_resubscribed=on_resubscribed)
    before = subscription.queue
    first = event()
    await publisher.publish([first])
    await eventually(lambda: asyncio.sleep(0, len(received)), lambda n: n == 1)

    subscriber_pids = await asyncio.to_thread(_connections_named, broker_namespace, "subscriber")
    assert await broker_namespace.cut_connections(subscriber_pids) == 1
    await asyncio.wait_for(resubscribed.wait(), 30)
    assert subscription.resubscriptions == 1
    assert subscription.queue != before

    after = [event() for _ in range(5)]
    await publisher.publish(after)
    await eventually(lambda: asyncio.sleep(0, len(received)), lambda n: n >= 6)
    assert [m.message_id for m in received] == [first.message_id, *(m.message_id for m in after)]
    assert subscriber.reconnects >= 1


def _connections_named(namespace: Any, role: str) -> list[str]:
    command = ["rabbitmqctl", "list_connections", "-q", "--no-table-headers", "pid", "client_properties"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("\t", 1)[0] for line in out.splitlines() if f'"{namespace.exchange}.{role}"' in line]
