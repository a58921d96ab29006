from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from worklist.adapters.tables import WorklistItemRow
from worklist.domain.model import StatusValues, WorklistItem


class SqlWorklistRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def for_study(self, organization_id: UUID, study_instance_uid: str) -> WorklistItem | None:
        row = (await self.session.execute(select(WorklistItemRow).where(
            WorklistItemRow.organization_id == organization_id,
            WorklistItemRow.study_instance_uid == study_instance_uid))).scalar_one_or_none()
        return None if row is None else _to_domain(row)

    async def save(self, item: WorklistItem) -> None:
        await self.session.merge(WorklistItemRow(**asdict(item)))


def _to_domain(row: WorklistItemRow) -> WorklistItem:
    values = row.model_dump()
    values["status"] = StatusValues(values["status"])
    for name in ("received_at", "updated_at"):
        values[name] = as_utc(values[name])
    return WorklistItem(**values)


def as_utc(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes; everything stored is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
