"""A consumer in its own OS process that commits its effect and dies before acknowledging.

``python bus_crash_worker.py '<json config>'`` (run by test_bus.py). The module also holds the effect
bookkeeping the bus tests share: every delivery is counted, the effect is written through the inbox.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import radcommon.inbox
from radcommon.db import Database
from radcommon.inbox import first_delivery
from radcommon.messaging.bus import ATTEMPT_HEADER, Message, RetryPolicy
from radcommon.messaging.local import LocalBus
from radcommon.messaging.rabbitmq import AioPikaBus
from radcommon.outbox import metadata

EXIT_CRASHED = 17
EXIT_NOTHING_DELIVERED = 3

_TABLES = [
    "CREATE TABLE deliveries (id serial PRIMARY KEY, consumer text NOT NULL, event_id text NOT NULL, "
    "attempt text NOT NULL, process text NOT NULL)",
    # No unique key on purpose: a duplicated effect must show, not fail.
    "CREATE TABLE effects (id serial PRIMARY KEY, event_id text NOT NULL)",
]


async def create_tables(db: Database) -> None:
    assert radcommon.inbox.inbox_table.name in metadata.tables
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        for ddl in _TABLES:
            await conn.execute(sa.text(ddl))


async def record_delivery(db: Database, consumer: str, message: Message, process: str) -> None:
    async with db.session() as session, session.begin():
        await session.execute(sa.text(
            "INSERT INTO deliveries (consumer, event_id, attempt, process) VALUES (:c, :e, :a, :p)"),
            {"c": consumer, "e": message.message_id, "a": message.headers.get(ATTEMPT_HEADER, ""), "p": process})


async def apply_effect(db: Database, consumer: str, message: Message) -> bool:
    """The effect and the inbox row in one transaction; False when the inbox already had the event."""
    async with db.session() as session, session.begin():
        if not await first_delivery(session, consumer, message.message_id, message.routing_key):
            return False
        await session.execute(sa.text("INSERT INTO effects (event_id) VALUES (:e)"), {"e": message.message_id})
    return True


async def scalar(db: Database, sql: str) -> Any:
    async with db.session() as session:
        return await session.scalar(sa.text(sql))


async def main(config: dict[str, Any]) -> int:
    retry = RetryPolicy(attempts=config["attempts"], base_delay=config["base_delay"])
    bus: LocalBus | AioPikaBus
    if config["transport"] == "local":
        bus = LocalBus(Path(config["path"]), retry)
    else:
        bus = AioPikaBus(config["url"], exchange=config["exchange"], retry=retry)
    db = Database(config["database_url"])
    queue = config["queue"]

    async def commit_then_die(message: Message) -> None:
        await record_delivery(db, queue, message, "worker")
        await apply_effect(db, queue, message)
        os._exit(EXIT_CRASHED)  # committed, never acknowledged: the transport must deliver it again

    await bus.connect()
    await bus.consume(queue, config["bindings"], commit_then_die)
    await asyncio.sleep(config.get("timeout", 30))
    return EXIT_NOTHING_DELIVERED


if __name__ == "__main__":
    sys.exit(asyncio.run(main(json.loads(sys.argv[1]))))
