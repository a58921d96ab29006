"""Ended sessions, projected from identity's ``session.ended`` events into each service's database.

An access token lives for minutes and is verified without asking identity, so logout, a revoked
session or a reused refresh token must reach every verifier (OWASP ASVS 5.0 V7.4.1). Each service
consumes :class:`~radcommon.contracts.identity.SessionEndedV1` with :func:`record_session_ended`
and keeps one row per ended session until its tokens have expired anyway.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from radcommon.contracts.identity import SessionEndedV1
from radcommon.db import Database
from radcommon.outbox import metadata
from radcommon.uow import SqlUnitOfWork

revoked_sessions_table = sa.Table(
    "revoked_sessions", metadata,
    sa.Column("session_id", sa.String(36), primary_key=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("revoked_sessions_expires_at", "expires_at"),
)
#: Rows outlive their tokens by this much, for clock skew between identity and the verifiers.
FORGET_AFTER = timedelta(minutes=5)


def create_revocation_table(op: Any) -> None:
    """The ``revoked_sessions`` projection, for a service's own Alembic revision."""
    op.create_table(
        "revoked_sessions",
        sa.Column("session_id", sa.String(36), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("revoked_sessions_expires_at", "revoked_sessions", ["expires_at"])


async def record_session_ended(event: SessionEndedV1, uow: SqlUnitOfWork) -> None:
    """Refuse the session's tokens from now on; redelivery changes nothing. Also forgets sessions
    whose tokens expired long ago (one indexed delete, as rare as sessions ending)."""
    table = revoked_sessions_table
    insert = postgresql.insert(table) if uow.db.is_postgres else sqlite.insert(table)
    insert = insert.values(session_id=str(event.session_id), expires_at=_utc(event.tokens_expire_by))
    await uow.session.execute(insert.on_conflict_do_update(
        index_elements=[table.c.session_id], set_={"expires_at": insert.excluded.expires_at},
        where=table.c.expires_at < insert.excluded.expires_at))
    await uow.session.execute(sa.delete(table).where(table.c.expires_at < datetime.now(UTC) - FORGET_AFTER))


class SqlRevocationList:
    """``is_revoked`` from the projection: at most one indexed query per session every ``cache_seconds``;
    a revoked answer is kept until the session's tokens expire."""

    def __init__(self, db: Database, *, cache_seconds: float = 2.0, max_cached: int = 10_000) -> None:
        self.db = db
        self.cache_seconds = cache_seconds
        self.max_cached = max_cached
        self._cache: dict[UUID, tuple[bool, float]] = {}

    async def is_revoked(self, session_id: UUID) -> bool:
        now = time.monotonic()
        cached = self._cache.get(session_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        table = revoked_sessions_table
        async with self.db.session() as session:
            expires_at = await session.scalar(
                sa.select(table.c.expires_at).where(table.c.session_id == str(session_id)))
        if expires_at is None:
            self._remember(session_id, False, now + self.cache_seconds)
            return False
        remaining = (_utc(expires_at) - datetime.now(UTC)).total_seconds()
        self._remember(session_id, True, now + max(remaining, self.cache_seconds))
        return True

    def _remember(self, session_id: UUID, revoked: bool, until: float) -> None:
        if len(self._cache) >= self.max_cached:
            now = time.monotonic()
            self._cache = {sid: entry for sid, entry in self._cache.items() if entry[1] > now}
            if len(self._cache) >= self.max_cached:
                self._cache.clear()
        self._cache[session_id] = (revoked, until)


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored here is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
