from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import delete, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from radcommon.contracts import PriorityValues
from worklist.adapters.tables import (
    OrganizationSequenceRow,
    PriorityRuleRow,
    ReaderRow,
    SlaPolicyRow,
    WorklistItemRow,
)
from worklist.domain.assignment import Reader
from worklist.domain.model import PRIORITY_RANK, StatusValues, WorklistItem
from worklist.domain.priority import PriorityRule
from worklist.domain.sla import SlaPolicy

ITEM_FIELDS = [f.name for f in fields(WorklistItem)]
MOMENTS = ("received_at", "deadline", "warn_at", "warned_at", "breached_at", "assigned_at", "claimed_at",
           "claim_expires_at", "preliminary_at", "finalized_at", "updated_at")


class SqlWorklistRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def for_study(self, organization_id: UUID, study_instance_uid: str) -> WorklistItem | None:
        row = (await self.session.execute(select(WorklistItemRow).where(
            col(WorklistItemRow.organization_id) == organization_id,
            col(WorklistItemRow.study_instance_uid) == study_instance_uid).with_for_update())).scalar_one_or_none()
        return None if row is None else to_domain(row)

    async def get(self, organization_id: UUID, item_id: UUID) -> WorklistItem | None:
        """The item, locked until the transaction ends (PostgreSQL), so two claims queue up."""
        row = (await self.session.execute(select(WorklistItemRow).where(
            col(WorklistItemRow.organization_id) == organization_id,
            col(WorklistItemRow.id) == item_id).with_for_update())).scalar_one_or_none()
        return None if row is None else to_domain(row)

    async def locked(self, *where: Any, order_by: Any, limit: int) -> list[WorklistItem]:
        """Items matching ``where`` that no other transaction holds, locked for this one (SKIP LOCKED)."""
        rows = (await self.session.execute(
            select(WorklistItemRow).where(*where)
            .order_by(*(order_by if isinstance(order_by, tuple) else (order_by,))).limit(limit)
            .with_for_update(skip_locked=True))).scalars().all()
        return [to_domain(row) for row in rows]

    async def save(self, item: WorklistItem) -> None:
        values = asdict(item)
        values["priority_rank"] = PRIORITY_RANK[item.priority]
        await self.session.merge(WorklistItemRow(**values))

    async def open_load(self, organization_id: UUID) -> dict[UUID, int]:
        """How many open items each radiologist holds (assigned or being read)."""
        rows = (await self.session.execute(
            select(WorklistItemRow.assignee_id, func.count())
            .where(col(WorklistItemRow.organization_id) == organization_id,
                   col(WorklistItemRow.assignee_id).is_not(None),
                   col(WorklistItemRow.status).in_([StatusValues.ASSIGNED, StatusValues.IN_PROGRESS]))
            .group_by(col(WorklistItemRow.assignee_id)))).all()
        return {assignee: count for assignee, count in rows if assignee is not None}


def to_domain(row: WorklistItemRow) -> WorklistItem:
    values = {name: getattr(row, name) for name in ITEM_FIELDS}
    values["status"] = StatusValues(values["status"])
    values["priority"] = PriorityValues(values["priority"])
    for name in MOMENTS:
        if values[name] is not None:
            values[name] = as_utc(values[name])
    return WorklistItem(**values)


def as_utc(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes; everything stored is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class SqlReaderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, organization_id: UUID, user_id: UUID) -> Reader | None:
        row = await self.session.get(ReaderRow, (organization_id, user_id))
        return None if row is None else _reader(row)

    async def of_organization(self, organization_id: UUID) -> list[Reader]:
        rows = (await self.session.execute(select(ReaderRow).where(
            col(ReaderRow.organization_id) == organization_id).order_by(col(ReaderRow.display_name)))).scalars()
        return [_reader(row) for row in rows]

    async def save(self, reader: Reader) -> None:
        await self.session.merge(ReaderRow(**asdict(reader)))


def _reader(row: ReaderRow) -> Reader:
    reader = Reader(**{f.name: getattr(row, f.name) for f in fields(Reader)})
    if reader.last_assigned_at is not None:
        reader.last_assigned_at = as_utc(reader.last_assigned_at)
    return reader


class SqlPolicyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def sla_policies(self, organization_id: UUID) -> list[SlaPolicy]:
        rows = (await self.session.execute(select(SlaPolicyRow).where(
            col(SlaPolicyRow.organization_id) == organization_id)
            .order_by(col(SlaPolicyRow.priority), col(SlaPolicyRow.modality)))).scalars()
        return [SlaPolicy(PriorityValues(r.priority), r.modality, r.minutes, r.warning_fraction) for r in rows]

    async def replace_sla_policies(self, organization_id: UUID, policies: Sequence[SlaPolicy]) -> None:
        await self.session.execute(delete(SlaPolicyRow).where(col(SlaPolicyRow.organization_id) == organization_id))
        self.session.add_all([SlaPolicyRow(id=uuid4(), organization_id=organization_id, priority=p.priority.value,
                                           modality=p.modality, minutes=p.minutes,
                                           warning_fraction=p.warning_fraction) for p in policies])

    async def priority_rules(self, organization_id: UUID) -> list[PriorityRule]:
        rows = (await self.session.execute(select(PriorityRuleRow).where(
            col(PriorityRuleRow.organization_id) == organization_id).order_by(col(PriorityRuleRow.position)))).scalars()
        return [PriorityRule(PriorityValues(r.priority), r.modality, r.body_part, r.description_contains,
                             r.calling_ae_title) for r in rows]

    async def replace_priority_rules(self, organization_id: UUID, rules: Sequence[PriorityRule]) -> None:
        await self.session.execute(delete(PriorityRuleRow).where(
            col(PriorityRuleRow.organization_id) == organization_id))
        self.session.add_all([PriorityRuleRow(id=uuid4(), organization_id=organization_id, position=n,
                                              priority=r.priority.value, modality=r.modality, body_part=r.body_part,
                                              description_contains=r.description_contains,
                                              calling_ae_title=r.calling_ae_title) for n, r in enumerate(rules)])


async def next_sequences(session: AsyncSession, organization_id: UUID, count: int) -> range:
    """Reserve ``count`` sequence numbers of the organisation's change feed.

    The counter row stays locked until the transaction ends, so the organisation's changes commit
    in sequence order and a reader never sees a later number before an earlier one.
    """
    table = OrganizationSequenceRow.__table__  # type: ignore[attr-defined]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(organization_id=organization_id, last_sequence=count)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.organization_id],
        set_={"last_sequence": table.c.last_sequence + count}).returning(table.c.last_sequence)
    last = int((await session.execute(statement)).scalar_one())
    return range(last - count + 1, last + 1)
