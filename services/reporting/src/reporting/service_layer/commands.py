"""What radiologists ask of reporting: start a report, save drafts, submit, add addenda, flag findings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy.exc import IntegrityError

from radcommon.contracts import (
    CriticalFindingCategoryValues,
    CriticalFindingFlaggedV1,
    ReportDraftedV1,
    ReportSubmittedV1,
)
from reporting.domain.report import (
    Addendum,
    CriticalFinding,
    OpenReportExists,
    Report,
    ReportError,
    ReportVersion,
)
from reporting.domain.templates import Template, missing_sections, normalized_content
from reporting.service_layer.unit_of_work import ReportingUnitOfWork


class ReportNotFound(ReportError):
    pass


class ItemNotFound(ReportError):
    pass


class TemplateUnavailable(ReportError):
    pass


async def find_report(uow: ReportingUnitOfWork, organization_id: UUID, report_id: UUID) -> Report:
    report = await uow.reports.get(organization_id, report_id)
    if report is None:
        raise ReportNotFound("no such report")
    return report


async def _template_of(uow: ReportingUnitOfWork, report: Report) -> Template:
    template = await uow.templates.version(report.organization_id, report.template_id, report.template_version)
    assert template is not None, "a report's template version is never deleted"
    return template


async def _newest(uow: ReportingUnitOfWork, report: Report) -> ReportVersion:
    newest = await uow.reports.version(report.id, report.version)
    assert newest is not None, "a report's versions are never deleted"
    return newest


def _drafted(report: Report, version: ReportVersion) -> ReportDraftedV1:
    return ReportDraftedV1(organization_id=report.organization_id, report_id=report.id,
                           study_instance_uid=report.study_instance_uid, author_id=version.author_id,
                           version=version.version)


async def create_report(uow: ReportingUnitOfWork, organization_id: UUID, author_id: UUID, worklist_item_id: UUID,
                        template_id: UUID) -> Report:
    """Version 1 from the template's defaults, by the radiologist who claims the study; one open report a study."""
    now = datetime.now(UTC)
    async with uow:
        item = await uow.items.get(organization_id, worklist_item_id)
        if item is None:
            raise ItemNotFound("no such worklist item")
        template = await uow.templates.get(organization_id, template_id)
        if template is None or not template.active:
            raise TemplateUnavailable("no active template with this id")
        report, first = Report.start(item, template, author_id, now)
        if (existing := await uow.reports.open_for_study(organization_id, item.study_instance_uid)) is not None:
            raise OpenReportExists(f"this study has an open report already: {existing.id}")
        try:
            await uow.reports.save(report)
            await uow.reports.add_version(first, organization_id)
            uow.publish(_drafted(report, first))
            await uow.commit()
        except IntegrityError:  # another report of the study, started at the same moment
            raise OpenReportExists("this study has an open report already") from None
    return report


async def save_draft(uow: ReportingUnitOfWork, organization_id: UUID, report_id: UUID, author_id: UUID,
                     content: dict[str, Any], base_version: int) -> Report:
    """A new version, if ``content`` differs from the newest and ``base_version`` is the newest."""
    now = datetime.now(UTC)
    async with uow:
        report = await find_report(uow, organization_id, report_id)
        content = normalized_content(await _template_of(uow, report), content)
        version = report.save_draft(author_id, content, base_version, await _newest(uow, report), now)
        if version is None:
            return report
        await uow.reports.save(report)
        await uow.reports.add_version(version, organization_id)
        uow.publish(_drafted(report, version))
        await uow.commit()
    return report


async def submit_report(uow: ReportingUnitOfWork, organization_id: UUID, report_id: UUID, author_id: UUID,
                        version: int) -> Report:
    """Preliminary: the version goes out, canonical content and digest, to be signed."""
    now = datetime.now(UTC)
    async with uow:
        report = await find_report(uow, organization_id, report_id)
        newest = await _newest(uow, report)
        missing = missing_sections(await _template_of(uow, report), newest.content)
        if not report.submit(author_id, version, newest, missing, now):
            return report
        await uow.reports.save(report)
        uow.publish(ReportSubmittedV1(
            organization_id=organization_id, report_id=report.id, study_instance_uid=report.study_instance_uid,
            author_id=author_id, version=newest.version, accession_number=report.accession_number,
            content_sha256=newest.content_sha256, content=newest.content))
        await uow.commit()
    return report


async def add_addendum(uow: ReportingUnitOfWork, organization_id: UUID, report_id: UUID, author_id: UUID,
                       text: str) -> Addendum:
    """A pending addendum to a final report, submitted to be signed on its own."""
    now = datetime.now(UTC)
    async with uow:
        report = await find_report(uow, organization_id, report_id)
        addendum = report.add_addendum(author_id, text, now)
        await uow.reports.save_addendum(addendum)
        uow.publish(ReportSubmittedV1(
            organization_id=organization_id, report_id=report.id, study_instance_uid=report.study_instance_uid,
            author_id=author_id, version=addendum.of_version, accession_number=report.accession_number,
            content_sha256=addendum.content_sha256, content=addendum.content, addendum_id=addendum.id))
        await uow.commit()
    return addendum


async def flag_critical_finding(uow: ReportingUnitOfWork, organization_id: UUID, report_id: UUID, flagged_by: UUID,
                                category: CriticalFindingCategoryValues, description: str,
                                referring_physician_name: str, referring_physician_contact: str) -> CriticalFinding:
    now = datetime.now(UTC)
    async with uow:
        report = await find_report(uow, organization_id, report_id)
        finding = report.flag_critical_finding(flagged_by, category, description, referring_physician_name,
                                               referring_physician_contact, now)
        await uow.reports.add_critical_finding(finding)
        uow.publish(CriticalFindingFlaggedV1(
            organization_id=organization_id, finding_id=finding.id, report_id=report.id,
            study_instance_uid=report.study_instance_uid, accession_number=report.accession_number,
            category=category, description=description, referring_physician_name=finding.referring_physician_name,
            referring_physician_contact=referring_physician_contact, flagged_by=flagged_by))
        await uow.commit()
    return finding
