"""The worklist's clock: SLA alerts, lapsed claims, waiting items, old feed entries.

Everything it acts on is in the database, so a restart loses nothing; each step locks the rows it
takes with SKIP LOCKED and marks them in the same transaction as the outgoing event, so replicas
running side by side never raise the same alert twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlmodel import col, select

from radcommon.contracts import SlaBreachedV1, SlaWarningV1
from worklist.adapters.tables import ReaderRow, WorklistChangeRow, WorklistItemRow
from worklist.domain.model import ALERTABLE, StatusValues, WorklistItem
from worklist.service_layer.rules import Staff, assign_by_rules
from worklist.service_layer.unit_of_work import WorklistUnitOfWork

BATCH = 200


def _alert(kind: type[SlaWarningV1], item: WorklistItem) -> SlaWarningV1:
    return kind(organization_id=item.organization_id, item_id=item.id, study_instance_uid=item.study_instance_uid,
                accession_number=item.accession_number, priority=item.priority, status=item.status,
                assignee_id=item.assignee_id, received_at=item.received_at, deadline=item.deadline)


async def raise_due_alerts(uow: WorklistUnitOfWork, now: datetime | None = None) -> int:
    """sla.breached for deadlines passed, sla.warning for those near; once each, breaches first."""
    now = now or datetime.now(UTC)
    async with uow:
        breached = await uow.items.locked(
            col(WorklistItemRow.breached_at).is_(None), col(WorklistItemRow.deadline) <= now,
            col(WorklistItemRow.status).in_(ALERTABLE), order_by=col(WorklistItemRow.deadline), limit=BATCH)
        for item in breached:
            item.breached_at, item.warned_at = now, item.warned_at or now  # no warning after the fact
            await uow.save(item, "sla_breached")
            uow.publish(_alert(SlaBreachedV1, item))
        warned = await uow.items.locked(
            col(WorklistItemRow.warned_at).is_(None), col(WorklistItemRow.warn_at) <= now,
            col(WorklistItemRow.status).in_(ALERTABLE), order_by=col(WorklistItemRow.warn_at), limit=BATCH)
        for item in warned:
            item.warned_at = now
            await uow.save(item, "sla_warning")
            uow.publish(_alert(SlaWarningV1, item))
        await uow.commit()
    return len(breached) + len(warned)


async def expire_claims(uow: WorklistUnitOfWork, now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    async with uow:
        lapsed = await uow.items.locked(
            col(WorklistItemRow.claimed_by).is_not(None), col(WorklistItemRow.claim_expires_at) <= now,
            col(WorklistItemRow.status) == StatusValues.IN_PROGRESS,
            order_by=col(WorklistItemRow.claim_expires_at), limit=BATCH)
        for item in lapsed:
            item.release(now)
            await uow.save(item, "claim_expired")
            await assign_by_rules(uow, item, now)
        await uow.commit()
    return len(lapsed)


async def assign_waiting_items(uow: WorklistUnitOfWork, now: datetime | None = None) -> int:
    """Items nobody took yet, most urgent first, for organisations with a reader available."""
    now = now or datetime.now(UTC)
    async with uow:
        staffed = select(col(ReaderRow.organization_id)).where(col(ReaderRow.available), col(ReaderRow.active))
        waiting = await uow.items.locked(
            col(WorklistItemRow.status) == StatusValues.RECEIVED,
            col(WorklistItemRow.organization_id).in_(staffed),
            order_by=(col(WorklistItemRow.priority_rank), col(WorklistItemRow.deadline)), limit=BATCH)
        assigned, staff = 0, {}
        for item in waiting:
            if item.organization_id not in staff:
                staff[item.organization_id] = await Staff.of(uow, item.organization_id)
            assigned += await assign_by_rules(uow, item, now, staff[item.organization_id])
        await uow.commit()
    return assigned


async def prune_change_feed(uow: WorklistUnitOfWork, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    async with uow:
        cutoff = now - timedelta(days=uow.settings.change_feed_days)
        await uow.session.execute(delete(WorklistChangeRow).where(col(WorklistChangeRow.occurred_at) < cutoff))
        await uow.commit()
