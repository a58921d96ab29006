"""The read side: reports as read, their versions, disputes, templates, and peer-review statistics."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from reporting.adapters.repository import (
    SqlTemplateRepository,
    addendum_of,
    dispute_of,
    finding_of,
    report_of,
    signature_of,
    version_of,
)
from reporting.adapters.tables import (
    AddendumRow,
    CriticalFindingRow,
    DisputeRow,
    PeerReviewRow,
    ReportRow,
    ReportVersionRow,
    SignatureRow,
)
from reporting.domain.quality import RadpeerScoreValues, radpeer_summary
from reporting.domain.report import Report, ReportStatusValues
from reporting.domain.templates import Template
from reporting.entrypoints.models import ReportsQuery, ReportView, TemplatesQuery
from reporting.representation import (
    addendum_view,
    dispute_view,
    json_of,
    report_summary,
    report_view,
    template_view,
    version_summary,
    version_view,
)


async def _report(session: AsyncSession, organization_id: UUID, report_id: UUID, drafts_visible: bool) -> Report | None:
    """The report, unless it belongs to another organisation or is a draft the reader may not see."""
    row = (await session.execute(select(ReportRow).where(col(ReportRow.organization_id) == organization_id,
                                                         col(ReportRow.id) == report_id))).scalar_one_or_none()
    if row is None or (row.status == ReportStatusValues.DRAFT and not drafts_visible):
        return None
    return report_of(row)


def shown_version(report: Report, drafts_visible: bool) -> int:
    """Once signed, the signed version; before, the newest (or, for readers who see no drafts, the submitted)."""
    if report.final_version is not None:
        return report.final_version
    if drafts_visible or report.submitted_version is None:
        return report.version
    return report.submitted_version


async def report_document(session: AsyncSession, organization_id: UUID, report_id: UUID,
                          drafts_visible: bool) -> tuple[ReportView, Template] | None:
    """The report as read (and the template version it is written in, for its section titles)."""
    report = await _report(session, organization_id, report_id, drafts_visible)
    if report is None:
        return None
    shown = await session.get(ReportVersionRow, (report.id, shown_version(report, drafts_visible)))
    template = await SqlTemplateRepository(session).version(organization_id, report.template_id,
                                                            report.template_version)
    assert shown is not None and template is not None, "versions are never deleted"
    signatures = {row.addendum_id: signature_of(row) for row in (await session.execute(
        select(SignatureRow).where(col(SignatureRow.report_id) == report.id))).scalars()}
    addenda = [addendum_view(a, signatures.get(a.id)) for a in map(addendum_of, (await session.execute(
        select(AddendumRow).where(col(AddendumRow.report_id) == report.id)
        .order_by(col(AddendumRow.created_at)))).scalars())]
    findings = [finding_of(row) for row in (await session.execute(
        select(CriticalFindingRow).where(col(CriticalFindingRow.report_id) == report.id)
        .order_by(col(CriticalFindingRow.flagged_at)))).scalars()]
    signature = signatures.get(None) if report.signed else None
    return report_view(report, template, version_of(shown), signature, addenda, findings), template


async def report_page(session: AsyncSession, organization_id: UUID, query: ReportsQuery,
                      drafts_visible: bool) -> dict[str, Any]:
    where: list[Any] = [col(ReportRow.organization_id) == organization_id]
    if query.study_instance_uid:
        where.append(col(ReportRow.study_instance_uid) == query.study_instance_uid)
    if query.status:
        where.append(col(ReportRow.status) == query.status)
    if not drafts_visible:
        where.append(col(ReportRow.status) != ReportStatusValues.DRAFT)
    total = await session.scalar(select(func.count()).select_from(ReportRow).where(*where))
    rows = (await session.execute(select(ReportRow).where(*where)
                                  .order_by(col(ReportRow.updated_at).desc(), col(ReportRow.id))
                                  .limit(query.limit).offset(query.offset))).scalars()
    return {"total": total or 0, "limit": query.limit, "offset": query.offset,
            "reports": [json_of(report_summary(report_of(row))) for row in rows]}


async def versions(session: AsyncSession, organization_id: UUID, report_id: UUID) -> dict[str, Any] | None:
    if await _report(session, organization_id, report_id, drafts_visible=True) is None:
        return None
    rows = (await session.execute(select(ReportVersionRow).where(col(ReportVersionRow.report_id) == report_id)
                                  .order_by(col(ReportVersionRow.version)))).scalars()
    return {"versions": [json_of(version_summary(version_of(row))) for row in rows]}


async def version(session: AsyncSession, organization_id: UUID, report_id: UUID, number: int) -> dict[str, Any] | None:
    if await _report(session, organization_id, report_id, drafts_visible=True) is None:
        return None
    row = await session.get(ReportVersionRow, (report_id, number))
    return None if row is None else json_of(version_view(version_of(row)))


async def disputes(session: AsyncSession, organization_id: UUID, report_id: UUID,
                   drafts_visible: bool) -> dict[str, Any] | None:
    if await _report(session, organization_id, report_id, drafts_visible) is None:
        return None
    rows = (await session.execute(select(DisputeRow).where(col(DisputeRow.organization_id) == organization_id,
                                                           col(DisputeRow.report_id) == report_id)
                                  .order_by(col(DisputeRow.raised_at)))).scalars()
    return {"disputes": [json_of(dispute_view(dispute_of(row))) for row in rows]}


async def templates_seeded(session: AsyncSession, organization_id: UUID) -> bool:
    return await SqlTemplateRepository(session).seeded(organization_id)


async def templates(session: AsyncSession, organization_id: UUID, query: TemplatesQuery) -> dict[str, Any]:
    found = await SqlTemplateRepository(session).of_organization(organization_id)
    found = [t for t in found if (query.include_inactive or t.active)
             and (query.modality is None or t.modality.upper() == query.modality.upper())
             and (query.body_part is None or t.body_part.upper() == query.body_part.upper())]
    return {"templates": [json_of(template_view(t)) for t in found]}


async def template(session: AsyncSession, organization_id: UUID, template_id: UUID,
                   number: int | None = None) -> dict[str, Any] | None:
    repository = SqlTemplateRepository(session)
    found = await (repository.get(organization_id, template_id) if number is None
                   else repository.version(organization_id, template_id, number))
    return None if found is None else json_of(template_view(found))


async def peer_review_stats(session: AsyncSession, organization_id: UUID, start: datetime | None,
                            end: datetime | None) -> dict[str, Any]:
    """Per radiologist whose reports were reviewed: count per RADPEER score, significant discrepancies."""
    where: list[Any] = [col(PeerReviewRow.organization_id) == organization_id]
    if start:
        where.append(col(PeerReviewRow.reviewed_at) >= start)
    if end:
        where.append(col(PeerReviewRow.reviewed_at) < end)
    rows = (await session.execute(select(PeerReviewRow.radiologist_id, PeerReviewRow.score, func.count())
                                  .where(*where).group_by(col(PeerReviewRow.radiologist_id),
                                                          col(PeerReviewRow.score)))).all()
    scores: dict[UUID, list[RadpeerScoreValues]] = defaultdict(list)
    for radiologist_id, score, count in rows:
        scores[radiologist_id] += [RadpeerScoreValues(score)] * int(count)
    radiologists = [{"radiologist_id": str(radiologist), **radpeer_summary(given)}
                    for radiologist, given in scores.items()]
    radiologists.sort(key=lambda r: (-r["reviews"], r["radiologist_id"]))
    return {"organization": radpeer_summary([s for given in scores.values() for s in given]),
            "radiologists": radiologists}
