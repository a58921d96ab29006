from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from radcommon.contracts import (
    CriticalFindingCategoryValues,
    DisputeOutcomeValues,
    SignatureMeaningValues,
    WorklistStatusValues,
)
from reporting.adapters.tables import (
    AddendumRow,
    CriticalFindingRow,
    DisputeRow,
    PeerReviewRow,
    ReportRow,
    ReportVersionRow,
    SignatureRow,
    TemplateRow,
    TemplateSeedRow,
    TemplateVersionRow,
    WorklistItemRow,
)
from reporting.domain.quality import Dispute, DisputeStatusValues, PeerReview
from reporting.domain.report import (
    Addendum,
    AddendumStatusValues,
    CriticalFinding,
    Report,
    ReportStatusValues,
    ReportVersion,
    Signature,
)
from reporting.domain.templates import Section, SectionKindValues, Template
from reporting.domain.worklist import WorklistItem


def as_utc(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes; everything stored is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _values(row: Any, kind: type[Any], **converters: Any) -> dict[str, Any]:
    values = {f.name: getattr(row, f.name) for f in fields(kind) if hasattr(row, f.name)}
    for name, value in values.items():
        if isinstance(value, datetime):
            values[name] = as_utc(value)
    for name, convert in converters.items():
        if values.get(name) is not None:
            values[name] = convert(values[name])
    return values


def section_document(section: Section) -> dict[str, Any]:
    return {"key": section.key, "title": section.title, "kind": section.kind.value, "options": list(section.options),
            "default": section.default, "required": section.required}


def section_of(document: dict[str, Any]) -> Section:
    return Section(document["key"], document["title"], SectionKindValues(document["kind"]),
                   tuple(document.get("options", ())), document.get("default"), bool(document.get("required")))


class SqlTemplateRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, organization_id: UUID, template_id: UUID, *, lock: bool = False) -> Template | None:
        statement = select(TemplateRow).where(col(TemplateRow.organization_id) == organization_id,
                                              col(TemplateRow.id) == template_id)
        row = (await self.session.execute(statement.with_for_update() if lock else statement)).scalar_one_or_none()
        return None if row is None else await self.version(organization_id, template_id, row.version, row.active)

    async def version(self, organization_id: UUID, template_id: UUID, version: int,
                      active: bool | None = None) -> Template | None:
        row = await self.session.get(TemplateVersionRow, (template_id, version))
        if row is None or row.organization_id != organization_id:
            return None
        if active is None:
            active = bool(await self.session.scalar(select(TemplateRow.active).where(
                col(TemplateRow.id) == template_id)))
        return Template(organization_id, row.name, row.modality, row.body_part,
                        tuple(section_of(s) for s in row.sections), id=template_id, version=version, active=active,
                        created_by=row.created_by, created_at=as_utc(row.created_at),
                        updated_at=as_utc(row.created_at))

    async def of_organization(self, organization_id: UUID) -> list[Template]:
        rows = (await self.session.execute(select(TemplateRow, TemplateVersionRow).join(
            TemplateVersionRow, (col(TemplateVersionRow.template_id) == col(TemplateRow.id))
            & (col(TemplateVersionRow.version) == col(TemplateRow.version)))
            .where(col(TemplateRow.organization_id) == organization_id)
            .order_by(col(TemplateRow.name)))).all()
        return [Template(organization_id, v.name, v.modality, v.body_part, tuple(section_of(s) for s in v.sections),
                         id=t.id, version=t.version, active=t.active, created_by=v.created_by,
                         created_at=as_utc(v.created_at), updated_at=as_utc(t.updated_at)) for t, v in rows]

    async def save(self, template: Template) -> None:
        """The template's current state, and its version (written once: versions never change)."""
        await self.session.merge(TemplateRow(
            id=template.id, organization_id=template.organization_id, name=template.name, modality=template.modality,
            body_part=template.body_part, version=template.version, active=template.active,
            updated_at=template.updated_at))
        await self.session.flush()
        if await self.session.get(TemplateVersionRow, (template.id, template.version)) is None:
            self.session.add(TemplateVersionRow(
                template_id=template.id, version=template.version, organization_id=template.organization_id,
                name=template.name, modality=template.modality, body_part=template.body_part,
                sections=[section_document(s) for s in template.sections], created_by=template.created_by,
                created_at=template.created_at))

    async def name_taken(self, organization_id: UUID, name: str, other_than: UUID | None = None) -> bool:
        where = [col(TemplateRow.organization_id) == organization_id, col(TemplateRow.name) == name]
        if other_than is not None:
            where.append(col(TemplateRow.id) != other_than)
        return (await self.session.scalar(select(TemplateRow.id).where(*where).limit(1))) is not None

    async def claim_seeding(self, organization_id: UUID, now: datetime) -> bool:
        """True the first time an organisation is seeded (and for nobody else, even racing)."""
        table = TemplateSeedRow.__table__  # type: ignore[attr-defined]
        dialect = postgresql if self.session.get_bind().dialect.name == "postgresql" else sqlite
        result = await self.session.execute(dialect.insert(table).values(organization_id=organization_id,
                                                                         seeded_at=now).on_conflict_do_nothing())
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def seeded(self, organization_id: UUID) -> bool:
        return await self.session.get(TemplateSeedRow, organization_id) is not None


class SqlWorklistProjection:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, organization_id: UUID, item_id: UUID) -> WorklistItem | None:
        """Locked until the transaction ends (PostgreSQL): replicas applying two changes of an item take turns,
        so the newer sequence always wins."""
        row = (await self.session.execute(select(WorklistItemRow).where(
            col(WorklistItemRow.organization_id) == organization_id, col(WorklistItemRow.id) == item_id)
            .with_for_update())).scalar_one_or_none()
        return None if row is None else WorklistItem(**_values(row, WorklistItem, status=WorklistStatusValues))

    async def save(self, item: WorklistItem) -> None:
        await self.session.merge(WorklistItemRow(**asdict(item)))


class SqlReportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, organization_id: UUID, report_id: UUID) -> Report | None:
        """The report, locked until the transaction ends (PostgreSQL), so two saves of it queue up."""
        row = (await self.session.execute(select(ReportRow).where(
            col(ReportRow.organization_id) == organization_id, col(ReportRow.id) == report_id)
            .with_for_update())).scalar_one_or_none()
        return None if row is None else report_of(row)

    async def open_for_study(self, organization_id: UUID, study_instance_uid: str) -> Report | None:
        row = (await self.session.execute(select(ReportRow).where(
            col(ReportRow.organization_id) == organization_id,
            col(ReportRow.study_instance_uid) == study_instance_uid,
            col(ReportRow.status).in_([ReportStatusValues.DRAFT, ReportStatusValues.PRELIMINARY])))).scalars().first()
        return None if row is None else report_of(row)

    async def save(self, report: Report) -> None:
        await self.session.merge(ReportRow(**asdict(report)))
        await self.session.flush()

    async def add_version(self, version: ReportVersion, organization_id: UUID) -> None:
        self.session.add(ReportVersionRow(organization_id=organization_id, **asdict(version)))

    async def version(self, report_id: UUID, version: int) -> ReportVersion | None:
        row = await self.session.get(ReportVersionRow, (report_id, version))
        return None if row is None else version_of(row)

    async def addendum(self, organization_id: UUID, addendum_id: UUID) -> Addendum | None:
        row = await self.session.get(AddendumRow, addendum_id)
        if row is None or row.organization_id != organization_id:
            return None
        return addendum_of(row)

    async def save_addendum(self, addendum: Addendum) -> None:
        await self.session.merge(AddendumRow(**asdict(addendum)))
        await self.session.flush()

    async def add_signature(self, signature: Signature) -> None:
        self.session.add(SignatureRow(**asdict(signature)))

    async def add_critical_finding(self, finding: CriticalFinding) -> None:
        self.session.add(CriticalFindingRow(**asdict(finding)))


def report_of(row: ReportRow) -> Report:
    return Report(**_values(row, Report, status=ReportStatusValues))


def version_of(row: ReportVersionRow) -> ReportVersion:
    return ReportVersion(**_values(row, ReportVersion))


def addendum_of(row: AddendumRow) -> Addendum:
    return Addendum(**_values(row, Addendum, status=AddendumStatusValues))


def signature_of(row: SignatureRow) -> Signature:
    return Signature(**_values(row, Signature, meaning=SignatureMeaningValues))


def finding_of(row: CriticalFindingRow) -> CriticalFinding:
    return CriticalFinding(**_values(row, CriticalFinding, category=CriticalFindingCategoryValues))


def dispute_of(row: DisputeRow) -> Dispute:
    return Dispute(**_values(row, Dispute, status=DisputeStatusValues, outcome=DisputeOutcomeValues))


class SqlQualityRepository:
    """Disputes and peer reviews."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def dispute(self, organization_id: UUID, dispute_id: UUID) -> Dispute | None:
        row = (await self.session.execute(select(DisputeRow).where(
            col(DisputeRow.organization_id) == organization_id, col(DisputeRow.id) == dispute_id)
            .with_for_update())).scalar_one_or_none()
        return None if row is None else dispute_of(row)

    async def save_dispute(self, dispute: Dispute) -> None:
        await self.session.merge(DisputeRow(**asdict(dispute)))

    async def reviewers_of(self, report_id: UUID) -> Sequence[UUID]:
        return (await self.session.execute(select(PeerReviewRow.reviewer_id).where(
            col(PeerReviewRow.report_id) == report_id))).scalars().all()

    async def add_review(self, review: PeerReview) -> None:
        self.session.add(PeerReviewRow(**asdict(review)))
