from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from worklist.adapters.repository import as_utc
from worklist.adapters.tables import WorklistItemRow


async def worklist_page(session: AsyncSession, organization_id: UUID, limit: int, offset: int) -> dict[str, Any]:
    where = WorklistItemRow.organization_id == organization_id
    total = await session.scalar(select(func.count()).select_from(WorklistItemRow).where(where))
    rows = (await session.execute(
        select(WorklistItemRow).where(where)
        .order_by(col(WorklistItemRow.received_at).desc(), col(WorklistItemRow.id))
        .limit(limit).offset(offset))).scalars().all()
    return {"total": total or 0, "limit": limit, "offset": offset, "items": [_item(r) for r in rows]}


def _item(row: WorklistItemRow) -> dict[str, Any]:
    item = row.model_dump(mode="json")
    item["received_at"] = as_utc(row.received_at).isoformat()
    item["updated_at"] = as_utc(row.updated_at).isoformat()
    return item
