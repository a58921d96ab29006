from __future__ import annotations

from uuid import UUID

from sqlmodel import col, select

from identity.adapters.tables import SessionRow
from radcommon.db import Database


class SessionTableRevocations:
    """Identity's own answer to "is this session over?": its sessions table, no projection needed."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def is_revoked(self, session_id: UUID) -> bool:
        async with self.db.session() as session:
            ended = (await session.execute(select(col(SessionRow.ended_at)).where(SessionRow.id == session_id))).first()
        return ended is None or ended[0] is not None
