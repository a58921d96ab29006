"""What reporting does with the events it consumes (queue ``reporting.events``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from radcommon.auth import record_session_ended
from radcommon.consumer import EventHandler
from radcommon.contracts import (
    Event,
    OrganizationCreatedV1,
    ReportAddendumAddedV1,
    ReportFinalizedV1,
    ReportSignedV1,
    SessionEndedV1,
    WorklistItemChangedV1,
    WorklistStatusValues,
)
from radcommon.messaging import PermanentFailure
from reporting.domain.report import Signature
from reporting.domain.worklist import WorklistItem
from reporting.service_layer.templates import seed_default_templates
from reporting.service_layer.unit_of_work import ReportingUnitOfWork

log = logging.getLogger(__name__)


class ItemDocument(BaseModel):
    """Our reading of the item a worklist change carries (the worklist API's item document)."""

    model_config = ConfigDict(extra="ignore")

    study_instance_uid: str
    accession_number: str = ""
    status: WorklistStatusValues
    assignee_id: UUID | None = None
    claimed_by: UUID | None = None
    claim_expires_at: AwareDatetime | None = None
    modalities: list[str] = []
    body_parts: list[str] = []
    referring_physician_name: str = ""
    patient_name: str = ""
    patient_id: str = ""


async def follow_worklist_item(event: WorklistItemChangedV1, uow: ReportingUnitOfWork) -> None:
    """Keep the newest state of each item; a change older than the one we hold is ignored."""
    try:
        document = ItemDocument.model_validate(event.item)
    except ValidationError as error:
        raise PermanentFailure(f"worklist item {event.item_id} is not readable: {error}") from error
    known = await uow.items.get(event.organization_id, event.item_id)
    if known is not None and known.sequence >= event.sequence:
        return
    await uow.items.save(WorklistItem(id=event.item_id, organization_id=event.organization_id,
                                      sequence=event.sequence, **document.model_dump()))


async def apply_signature(event: ReportSignedV1, uow: ReportingUnitOfWork) -> None:
    """A signature of the submitted version makes the report final; of a pending addendum, part of it."""
    signature = Signature.from_event(event)
    about = {"report_id": str(event.report_id), "version": event.version, "signature_id": str(event.signature_id),
             "addendum_id": str(event.addendum_id) if event.addendum_id else None}
    report = await uow.reports.get(event.organization_id, event.report_id)
    if report is None:
        log.warning("signature of a report we do not have; ignored", extra=about)
        return
    if event.addendum_id is None:
        if not report.sign(signature):
            log.warning("signature of a version that is not the report's submitted one; nothing changes",
                        extra={**about, "status": report.status.value, "submitted_version": report.submitted_version})
            return
        await uow.reports.save(report)
        await uow.reports.add_signature(signature)
        uow.publish(ReportFinalizedV1(
            organization_id=report.organization_id, report_id=report.id, study_instance_uid=report.study_instance_uid,
            accession_number=report.accession_number, signed_by=signature.signer_id, version=signature.version,
            signature_id=signature.signature_id))
        return
    addendum = await uow.reports.addendum(event.organization_id, event.addendum_id)
    if addendum is None or not report.sign_addendum(addendum, signature):
        log.warning("signature of an addendum that is not pending as signed; nothing changes", extra=about)
        return
    await uow.reports.save(report)
    await uow.reports.save_addendum(addendum)
    await uow.reports.add_signature(signature)
    uow.publish(ReportAddendumAddedV1(
        organization_id=report.organization_id, report_id=report.id, study_instance_uid=report.study_instance_uid,
        addendum_id=addendum.id, author_id=addendum.author_id))


async def give_default_templates(event: OrganizationCreatedV1, uow: ReportingUnitOfWork) -> None:
    await seed_default_templates(uow, event.organization_id, event.occurred_at)


EVENT_HANDLERS: dict[type[Event], Sequence[EventHandler]] = {
    WorklistItemChangedV1: [follow_worklist_item],
    ReportSignedV1: [apply_signature],
    OrganizationCreatedV1: [give_default_templates],
    SessionEndedV1: [record_session_ended],
}
