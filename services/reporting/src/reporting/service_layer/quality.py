"""Disputes of final reports, and peer review."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy.exc import IntegrityError

from radcommon.contracts import DisputeOutcomeValues, DisputeResolvedV1, ReportDisputedV1
from reporting.domain.quality import AlreadyReviewed, Dispute, PeerReview, RadpeerScoreValues
from reporting.domain.report import ReportError
from reporting.service_layer.commands import find_report
from reporting.service_layer.unit_of_work import ReportingUnitOfWork


class DisputeNotFound(ReportError):
    pass


async def _dispute(uow: ReportingUnitOfWork, organization_id: UUID, dispute_id: UUID) -> Dispute:
    dispute = await uow.quality.dispute(organization_id, dispute_id)
    if dispute is None:
        raise DisputeNotFound("no such dispute")
    return dispute


async def raise_dispute(uow: ReportingUnitOfWork, organization_id: UUID, report_id: UUID, raised_by: UUID,
                        reason: str) -> Dispute:
    async with uow:
        report = await find_report(uow, organization_id, report_id)
        dispute = Dispute.raise_against(report, raised_by, reason, datetime.now(UTC))
        await uow.quality.save_dispute(dispute)
        uow.publish(ReportDisputedV1(organization_id=organization_id, dispute_id=dispute.id, report_id=report.id,
                                     study_instance_uid=report.study_instance_uid, raised_by=raised_by,
                                     reason=reason))
        await uow.commit()
    return dispute


async def respond_to_dispute(uow: ReportingUnitOfWork, organization_id: UUID, dispute_id: UUID, author_id: UUID,
                             text: str) -> Dispute:
    async with uow:
        dispute = await _dispute(uow, organization_id, dispute_id)
        report = await find_report(uow, organization_id, dispute.report_id)
        dispute.respond(report, author_id, text, datetime.now(UTC))
        await uow.quality.save_dispute(dispute)
        await uow.commit()
    return dispute


async def resolve_dispute(uow: ReportingUnitOfWork, organization_id: UUID, dispute_id: UUID, manager_id: UUID,
                          outcome: DisputeOutcomeValues, note: str) -> Dispute:
    async with uow:
        dispute = await _dispute(uow, organization_id, dispute_id)
        dispute.resolve(manager_id, outcome, note, datetime.now(UTC))
        await uow.quality.save_dispute(dispute)
        uow.publish(DisputeResolvedV1(organization_id=organization_id, dispute_id=dispute.id,
                                      report_id=dispute.report_id, outcome=outcome, resolved_by=manager_id))
        await uow.commit()
    return dispute


async def review_report(uow: ReportingUnitOfWork, organization_id: UUID, report_id: UUID, reviewer_id: UUID,
                        score: RadpeerScoreValues, comment: str) -> PeerReview:
    """One RADPEER score per reviewer and report, by anyone but its author, once it is final."""
    async with uow:
        report = await find_report(uow, organization_id, report_id)
        review = PeerReview.of(report, reviewer_id, score, comment, await uow.quality.reviewers_of(report.id),
                               datetime.now(UTC))
        await uow.quality.add_review(review)
        try:
            await uow.commit()
        except IntegrityError:  # the same reviewer, twice at once
            raise AlreadyReviewed("you reviewed this report already") from None
    return review
