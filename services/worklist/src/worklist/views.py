"""The read side: the worklist as people search it, its dashboard counts and its turnaround figures."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import String, and_, cast, func, or_
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from worklist.adapters.repository import as_utc, to_domain
from worklist.adapters.tables import OrganizationSequenceRow, ReaderRow, WorklistChangeRow, WorklistItemRow
from worklist.domain.model import ALERTABLE, OPEN, StatusValues
from worklist.entrypoints.models import SortValues, WorklistQuery
from worklist.representation import item_document

Item = WorklistItemRow
SORTS = {
    SortValues.PRIORITY: (col(Item.priority_rank), col(Item.deadline)),
    SortValues.DEADLINE: (col(Item.deadline),),
    SortValues.LATEST_DEADLINE: (col(Item.deadline).desc(),),
    SortValues.RECEIVED: (col(Item.received_at),),
    SortValues.NEWEST: (col(Item.received_at).desc(),),
}


def _pairs(rows: Any) -> dict[Any, Any]:
    return {key: value for key, value in rows}


def _contains_code(column: Any, code: str) -> Any:
    """A JSON list of codes holding ``code`` (the lists are upper-case codes, stored as JSON text)."""
    return cast(column, String).contains(f'"{code.upper()}"', autoescape=True)


def _sla_condition(state: str, now: datetime) -> Any:
    waiting = col(Item.status).in_(ALERTABLE)
    if state == "breached":
        return and_(waiting, col(Item.deadline) <= now)
    if state == "warning":
        return and_(waiting, col(Item.warn_at) <= now, col(Item.deadline) > now)
    return and_(waiting, col(Item.warn_at) > now)


def _conditions(organization_id: UUID, query: WorklistQuery, me: UUID, now: datetime) -> list[Any]:
    where: list[Any] = [col(Item.organization_id) == organization_id]
    if query.status:
        where.append(col(Item.status).in_([s.value for s in query.status]))
    if query.priority:
        where.append(col(Item.priority).in_([p.value for p in query.priority]))
    if query.modality:
        where.append(_contains_code(Item.modalities, query.modality))
    if query.body_part:
        where.append(_contains_code(Item.body_parts, query.body_part))
    if query.assignee == "me":
        where.append(col(Item.assignee_id) == me)
    elif query.assignee == "none":
        where.append(col(Item.assignee_id).is_(None))
    elif query.assignee is not None:
        where.append(col(Item.assignee_id) == query.assignee)
    if query.received_from:
        where.append(col(Item.received_at) >= datetime.combine(query.received_from, time(), UTC))
    if query.received_to:
        where.append(col(Item.received_at) < datetime.combine(query.received_to + timedelta(days=1), time(), UTC))
    if query.patient:
        where.append(or_(col(Item.patient_id) == query.patient,
                         func.lower(col(Item.patient_name)).contains(query.patient.lower(), autoescape=True)))
    if query.accession:
        where.append(col(Item.accession_number) == query.accession)
    if query.sla:
        where.append(_sla_condition(query.sla, now))
    return where


async def worklist_page(session: AsyncSession, organization_id: UUID, query: WorklistQuery,
                        me: UUID) -> dict[str, Any]:
    now = datetime.now(UTC)
    where = _conditions(organization_id, query, me, now)
    total = await session.scalar(select(func.count()).select_from(Item).where(*where))
    rows = (await session.execute(
        select(Item).where(*where).order_by(*SORTS[query.sort], col(Item.id))
        .limit(query.limit).offset(query.offset))).scalars().all()
    return {"total": total or 0, "limit": query.limit, "offset": query.offset,
            "items": [item_document(to_domain(row), now) for row in rows]}


async def worklist_item(session: AsyncSession, organization_id: UUID, item_id: UUID) -> dict[str, Any] | None:
    row = (await session.execute(select(Item).where(col(Item.organization_id) == organization_id,
                                                    col(Item.id) == item_id))).scalar_one_or_none()
    return None if row is None else item_document(to_domain(row))


async def worklist_counts(session: AsyncSession, organization_id: UUID, me: UUID) -> dict[str, Any]:
    now = datetime.now(UTC)
    mine = org = col(Item.organization_id) == organization_id
    by_status = _pairs((await session.execute(
        select(col(Item.status), func.count()).where(org).group_by(col(Item.status)))).all())
    waiting = col(Item.status).in_(ALERTABLE)
    by_priority = _pairs((await session.execute(
        select(col(Item.priority), func.count()).where(org, waiting).group_by(col(Item.priority)))).all())

    async def count(*where: Any) -> int:
        return int(await session.scalar(select(func.count()).select_from(Item).where(org, *where)) or 0)

    mine = and_(col(Item.assignee_id) == me, col(Item.status).in_(OPEN))
    return {
        "total_open": sum(n for status, n in by_status.items() if status in ALERTABLE),
        "by_status": {status.value: by_status.get(status.value, 0) for status in StatusValues},
        "by_priority": by_priority,
        "unassigned": by_status.get(StatusValues.RECEIVED.value, 0),
        "mine": await count(mine),
        "warning": await count(_sla_condition("warning", now)),
        "breached": await count(_sla_condition("breached", now)),
    }


def _turnaround(rows: list[tuple[datetime, datetime, datetime]]) -> dict[str, Any]:
    """rows: (received_at, finalized_at, deadline)."""
    minutes = sorted((as_utc(final) - as_utc(received)).total_seconds() / 60 for received, final, _ in rows)
    met = sum(1 for _, final, deadline in rows if as_utc(final) <= as_utc(deadline))
    return {
        "reports": len(rows),
        "median_minutes": round(statistics.median(minutes), 2) if minutes else None,
        "p90_minutes": round(_percentile(minutes, 0.9), 2) if minutes else None,
        "met_sla": met,
        "sla_compliance": round(met / len(rows), 4) if rows else None,
    }


def _percentile(ordered: list[float], share: float) -> float:
    """Linear interpolation between closest ranks (the 'inclusive' method, numpy's default)."""
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * share
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def worklist_stats(session: AsyncSession, organization_id: UUID, finalized_from: datetime | None,
                         finalized_to: datetime | None) -> dict[str, Any]:
    where = [col(Item.organization_id) == organization_id, col(Item.finalized_at).is_not(None)]
    if finalized_from:
        where.append(col(Item.finalized_at) >= finalized_from)
    if finalized_to:
        where.append(col(Item.finalized_at) < finalized_to)
    rows = (await session.execute(sa_select(col(Item.reported_by), col(Item.priority), col(Item.received_at),
                                         col(Item.finalized_at), col(Item.deadline)).where(*where))).all()
    by_reader: dict[UUID, list[tuple[datetime, datetime, datetime]]] = defaultdict(list)
    by_priority: dict[str, list[tuple[datetime, datetime, datetime]]] = defaultdict(list)
    everything = []
    for reported_by, priority, received_at, finalized_at, deadline in rows:
        assert finalized_at is not None  # the query asks for finalised items only
        moments = (received_at, finalized_at, deadline)
        everything.append(moments)
        by_priority[priority].append(moments)
        if reported_by is not None:
            by_reader[reported_by].append(moments)
    names = _pairs((await session.execute(select(ReaderRow.user_id, ReaderRow.display_name).where(
        col(ReaderRow.organization_id) == organization_id))).all())
    now = datetime.now(UTC)
    open_breached = await session.scalar(select(func.count()).select_from(Item).where(
        col(Item.organization_id) == organization_id, _sla_condition("breached", now)))
    return {
        "organization": _turnaround(everything),
        "by_priority": {priority: _turnaround(moments) for priority, moments in sorted(by_priority.items())},
        "by_radiologist": sorted(({"user_id": str(user), "display_name": names.get(user, ""), **_turnaround(m)}
                                  for user, m in by_reader.items()), key=lambda r: (-r["reports"], r["user_id"])),
        "open_breached": int(open_breached or 0),
    }


async def changes_after(session: AsyncSession, organization_id: UUID, after: int, limit: int) -> dict[str, Any]:
    rows = (await session.execute(select(WorklistChangeRow).where(
        col(WorklistChangeRow.organization_id) == organization_id, col(WorklistChangeRow.sequence) > after)
        .order_by(col(WorklistChangeRow.sequence)).limit(limit))).scalars().all()
    last = await session.scalar(select(OrganizationSequenceRow.last_sequence).where(
        col(OrganizationSequenceRow.organization_id) == organization_id))
    return {"changes": [{"sequence": r.sequence, "item_id": str(r.item_id), "change": r.change, "item": r.item}
                        for r in rows],
            "last_sequence": int(last or 0)}


async def readers(session: AsyncSession, organization_id: UUID) -> dict[str, Any]:
    load = _pairs((await session.execute(
        select(col(Item.assignee_id), func.count()).where(
            col(Item.organization_id) == organization_id, col(Item.status).in_(OPEN))
        .group_by(col(Item.assignee_id)))).all())
    rows = (await session.execute(select(ReaderRow).where(col(ReaderRow.organization_id) == organization_id)
                                  .order_by(col(ReaderRow.display_name), col(ReaderRow.user_id)))).scalars()
    return {"readers": [{"user_id": str(r.user_id), "display_name": r.display_name, "modalities": r.modalities,
                         "body_parts": r.body_parts, "available": r.available, "active": r.active,
                         "max_open": r.max_open, "open_items": int(load.get(r.user_id, 0))} for r in rows]}
