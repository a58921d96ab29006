from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from radcommon.auth import record_session_ended
from radcommon.consumer import EventHandler
from radcommon.contracts import (
    Event,
    ReportAddendumAddedV1,
    ReportDraftedV1,
    ReportFinalizedV1,
    ReportSubmittedV1,
    RoleValues,
    SessionEndedV1,
    StudyReceivedV1,
    StudyUpdatedV1,
    UserRegisteredV1,
    UserRoleChangedV1,
)
from worklist.domain.assignment import Reader
from worklist.domain.model import PRIORITY_RANK, WorklistItem
from worklist.service_layer.rules import assign_by_rules, deadline_of, priority_of
from worklist.service_layer.unit_of_work import WorklistUnitOfWork

log = logging.getLogger(__name__)


async def put_study_on_worklist(event: StudyReceivedV1, uow: WorklistUnitOfWork) -> None:
    now = datetime.now(UTC)
    item = await uow.items.for_study(event.organization_id, event.study_instance_uid)
    priority = await priority_of(uow, event.organization_id, event.priority, list(event.modalities),
                                 list(event.body_parts), event.study_description, event.calling_ae_title)
    if item is None:
        deadline = await deadline_of(uow, event.organization_id, priority, list(event.modalities), event.occurred_at)
        item = WorklistItem.for_study(event, priority, deadline)
        await uow.save(item, "created")
        await assign_by_rules(uow, item, now)
        return
    item.study_changed(event)
    if PRIORITY_RANK[priority] < PRIORITY_RANK[item.priority]:  # a late series may make it more urgent, never less
        deadline = await deadline_of(uow, item.organization_id, priority, item.modalities, item.received_at)
        item.reprioritise(priority, deadline, now)
    await uow.save(item, "updated")


async def _item_of_report(event: ReportDraftedV1 | ReportFinalizedV1 | ReportAddendumAddedV1,
                          uow: WorklistUnitOfWork) -> WorklistItem | None:
    item = await uow.items.for_study(event.organization_id, event.study_instance_uid)
    if item is None:
        log.warning("report for a study not on the worklist", extra={
            "study_instance_uid": event.study_instance_uid, "report_id": str(event.report_id)})
    return item


async def follow_report_drafted(event: ReportDraftedV1, uow: WorklistUnitOfWork) -> None:
    item = await _item_of_report(event, uow)
    if item and item.report_drafted(event.author_id, event.occurred_at, timedelta(minutes=uow.settings.claim_minutes)):
        await uow.save(item, "report_drafted")


async def follow_report_submitted(event: ReportSubmittedV1, uow: WorklistUnitOfWork) -> None:
    item = await _item_of_report(event, uow)
    if item and item.report_submitted(event.author_id, event.occurred_at):
        await uow.save(item, "report_submitted")


async def follow_report_finalized(event: ReportFinalizedV1, uow: WorklistUnitOfWork) -> None:
    item = await _item_of_report(event, uow)
    if item and item.report_finalized(event.signed_by, event.occurred_at):
        await uow.save(item, "report_finalized")


async def follow_addendum(event: ReportAddendumAddedV1, uow: WorklistUnitOfWork) -> None:
    item = await _item_of_report(event, uow)
    if item and item.addendum_added(event.occurred_at):
        await uow.save(item, "report_amended")


async def know_radiologist(event: UserRegisteredV1 | UserRoleChangedV1, uow: WorklistUnitOfWork) -> None:
    """Radiologists become readers (every competence, available) until a manager says otherwise."""
    reads = RoleValues.RADIOLOGIST in event.roles
    reader = await uow.readers.get(event.organization_id, event.user_id)
    if reader is None:
        if not reads:
            return
        reader = Reader(organization_id=event.organization_id, user_id=event.user_id)
    reader.active = reads
    if isinstance(event, UserRegisteredV1) and event.full_name:
        reader.display_name = event.full_name
    await uow.readers.save(reader)


EVENT_HANDLERS: dict[type[Event], Sequence[EventHandler]] = {
    StudyReceivedV1: [put_study_on_worklist],
    StudyUpdatedV1: [put_study_on_worklist],
    ReportDraftedV1: [follow_report_drafted],
    ReportSubmittedV1: [follow_report_submitted],
    ReportFinalizedV1: [follow_report_finalized],
    ReportAddendumAddedV1: [follow_addendum],
    UserRegisteredV1: [know_radiologist],
    UserRoleChangedV1: [know_radiologist],
    SessionEndedV1: [record_session_ended],
}
