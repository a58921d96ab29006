"""Inbox: a consumer records each event it handled in the same transaction as the effect.

A redelivered event finds its row and changes nothing. Two deliveries racing each other both try
to insert the same primary key; one transaction fails and its message is retried, then skipped.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from radcommon.outbox import metadata

inbox_table = sa.Table(
    "inbox", metadata,
    sa.Column("consumer", sa.String(255), primary_key=True),
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("routing_key", sa.String(255), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)


async def first_delivery(session: AsyncSession, consumer: str, event_id: str, routing_key: str) -> bool:
    """Record the event for ``consumer``; False when it was handled before (skip the effect)."""
    seen = await session.scalar(sa.select(sa.literal(1)).select_from(inbox_table).where(
        inbox_table.c.consumer == consumer, inbox_table.c.event_id == event_id))
    if seen:
        return False
    await session.execute(sa.insert(inbox_table).values(
        consumer=consumer, event_id=event_id, routing_key=routing_key, received_at=datetime.now(UTC)))
    return True
