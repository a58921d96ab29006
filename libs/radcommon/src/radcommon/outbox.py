"""Transactional outbox: a service's state and its outgoing events commit together.

A handler adds events to the unit of work's session (:func:`add_to_outbox`); the relay
(:class:`OutboxRelay`) publishes pending rows in id order with publisher confirms and marks them
sent. A crash between publishing and marking publishes again: consumers drop the duplicate through
their inbox. One relay per database is active at a time (a PostgreSQL advisory lock), which keeps
the order of each aggregate's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from radcommon.contracts import Event
from radcommon.db import Database
from radcommon.messaging import Bus, Message
from radcommon.telemetry import current_traceparent

log = logging.getLogger(__name__)

metadata = sa.MetaData()
outbox_table = sa.Table(
    "outbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False, unique=True),
    sa.Column("routing_key", sa.String(255), nullable=False),
    sa.Column("aggregate_id", sa.String(255), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("headers", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
)
_RELAY_LOCK = 7286533


def add_to_outbox(session: AsyncSession, event: Event) -> None:
    """Stage ``event`` in the session's transaction; it is published only if that commits."""
    if event.trace_parent is None and (trace_parent := current_traceparent()):
        event = event.model_copy(update={"trace_parent": trace_parent})
    session.info.setdefault("outbox", []).append(event)


async def flush_outbox(session: AsyncSession) -> int:
    """Insert the staged events; called by the unit of work just before it commits."""
    events: list[Event] = session.info.pop("outbox", [])
    if not events:
        return 0
    now = datetime.now(UTC)
    await session.execute(sa.insert(outbox_table), [
        {"event_id": str(e.event_id), "routing_key": e.routing_key, "aggregate_id": e.aggregate_id(),
         "body": e.model_dump_json(),
         "headers": json.dumps({"traceparent": e.trace_parent} if e.trace_parent else {}),
         "created_at": now}
        for e in events])
    return len(events)


class OutboxRelay:
    def __init__(self, db: Database, bus: Bus, *, batch: int = 200, poll_seconds: float = 1.0) -> None:
        self.db = db
        self.bus = bus
        self.batch = batch
        self.poll_seconds = poll_seconds

    async def publish_pending(self) -> int:
        """Publish one batch of pending rows; returns how many were published."""
        async with self.db.session() as session, session.begin():
            if self.db.is_postgres:
                locked = await session.scalar(sa.text(f"SELECT pg_try_advisory_xact_lock({_RELAY_LOCK})"))
                if not locked:
                    return 0
            rows = (await session.execute(
                sa.select(outbox_table.c.id, outbox_table.c.event_id, outbox_table.c.routing_key,
                          outbox_table.c.body, outbox_table.c.headers)
                .where(outbox_table.c.sent_at.is_(None))
                .order_by(outbox_table.c.id)
                .limit(self.batch)
            )).all()
            if not rows:
                return 0
            await self.bus.publish([
                Message(r.event_id, r.routing_key, r.body.encode(), json.loads(r.headers)) for r in rows])
            await session.execute(
                sa.update(outbox_table).where(outbox_table.c.id.in_([r.id for r in rows]))
                .values(sent_at=datetime.now(UTC)))
        return len(rows)

    async def run(self) -> None:
        while True:
            self.db.outbox_written.clear()
            try:
                published = await self.publish_pending()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying")
                published = 0
                await asyncio.sleep(self.poll_seconds)
            if published == self.batch:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.db.outbox_written.wait(), self.poll_seconds)

    async def pending(self) -> int:
        async with self.db.session() as session:
            return int(await session.scalar(
                sa.select(sa.func.count()).select_from(outbox_table).where(outbox_table.c.sent_at.is_(None))) or 0)
