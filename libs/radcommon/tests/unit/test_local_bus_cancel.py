"""The embedded bus when a caller is cancelled half-way through one of its transactions (a stopping platform)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from uuid import uuid4

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
