"""The embedded bus when a caller is cancelled half-way through one of its transactions (a stopping platform)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from uuid import uuid4

import pytest

from radcommon.messaging import Message
from radcommon.messaging.local import LocalBus


async def test_a_publish_cancelled_at_any_point_leaves_the_bus_usable_and_publishes_all_or_nothing(
        tmp_path: Path) -> None:
    bus = LocalBus(tmp_path / "bus.db")
    await bus.connect()
    await bus.declare("q", ["a.#"])
    published: list[str] = []
    try:
        for steps in range(40):  # cancel after 0, 1, 2... turns of the event loop: inside BEGIN, an INSERT, COMMIT
            batch = [Message(str(uuid4()), "a.b", b"{}") for _ in range(3)]
            publishing = asyncio.ensure_future(bus.publish(batch))
            for _ in range(steps):
                await asyncio.sleep(0)
            publishing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publishing
            after = Message(str(uuid4()), "a.b", b"{}")
            await bus.publish([after])  # failed with "cannot start a transaction within a transaction"
            await asyncio.sleep(0.01)  # a transaction that outlived its caller has finished by now
            async with bus.db.execute("SELECT message_id FROM messages WHERE queue='q' ORDER BY id") as cursor:
                held = [row[0] async for row in cursor]
            new = held[len(published):]
            assert new in ([after.message_id], [m.message_id for m in batch] + [after.message_id]), steps
            published = held
    finally:
        await bus.close()


async def test_close_closes_the_database_even_when_a_consumer_had_died_of_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bus = LocalBus(tmp_path / "bus.db")
    await bus.connect()
    handled = asyncio.Event()

    async def handle(message: Message) -> None:
        handled.set()

    async def broken_transaction(statements: object) -> None:
        raise sqlite3.OperationalError("cannot start a transaction within a transaction")

    await bus.consume("q", ["a.#"], handle)
    monkeypatch.setattr(bus, "_transaction", broken_transaction)
    await bus.db.execute("INSERT INTO messages (queue, message_id, routing_key, body, headers, attempt, available_at, "
                         "state) VALUES ('q', 'm1', 'a.b', x'7b7d', '{}', 1, 0, 'ready')")
    bus._wake("q")
    await asyncio.wait_for(handled.wait(), 5)
    connection = bus.db
    await bus.close()  # the consumer died acknowledging: logged, and the connection still closed
    assert bus._db is None
    with pytest.raises(ValueError):
        await connection.execute("SELECT 1")
