"""Templates, reports, addenda and disputes as the API shows them."""

from __future__ import annotations

from typing import Any

from reporting.domain.quality import Dispute, PeerReview
from reporting.domain.report import Addendum, CriticalFinding, Integrity, Report, ReportVersion, Signature
from reporting.domain.templates import Template
from reporting.entrypoints.models import (
    AddendumView,
    CriticalFindingView,
    DisputeView,
    IntegrityView,
    PeerReviewView,
    ReportSummary,
    ReportView,
    SectionModel,
    SignatureView,
    TemplateReference,
    TemplateView,
    VersionSummary,
    VersionView,
)


def json_of(view: Any) -> Any:
    return view.model_dump(mode="json")


def template_view(template: Template) -> TemplateView:
    return TemplateView(
        id=template.id, organization_id=template.organization_id, name=template.name, modality=template.modality,
        body_part=template.body_part, version=template.version, active=template.active,
        sections=[SectionModel(key=s.key, title=s.title, kind=s.kind, options=list(s.options), default=s.default,
                               required=s.required) for s in template.sections],
        created_by=template.created_by, created_at=template.created_at)


def signature_view(signature: Signature) -> SignatureView:
    return SignatureView(signature_id=signature.signature_id, signer_id=signature.signer_id,
                         signer_name=signature.signer_name, meaning=signature.meaning, signed_at=signature.signed_at,
                         version=signature.version, content_sha256=signature.content_sha256)


def integrity_view(integrity: Integrity | None) -> IntegrityView | None:
    if integrity is None:
        return None
    return IntegrityView(signed_digest=integrity.signed_digest, current_digest=integrity.current_digest,
                         intact=integrity.intact)


def addendum_view(addendum: Addendum, signature: Signature | None) -> AddendumView:
    return AddendumView(
        id=addendum.id, report_id=addendum.report_id, author_id=addendum.author_id, text=addendum.text,
        of_version=addendum.of_version, status=addendum.status, content_sha256=addendum.content_sha256,
        created_at=addendum.created_at, signature=signature_view(signature) if signature else None,
        integrity=integrity_view(Integrity.of(signature.content_sha256, addendum.content) if signature else None))


def finding_view(finding: CriticalFinding) -> CriticalFindingView:
    return CriticalFindingView(
        id=finding.id, report_id=finding.report_id, category=finding.category, description=finding.description,
        referring_physician_name=finding.referring_physician_name,
        referring_physician_contact=finding.referring_physician_contact, flagged_by=finding.flagged_by,
        flagged_at=finding.flagged_at)


def report_summary(report: Report) -> ReportSummary:
    return ReportSummary(**_summary_fields(report))


def _summary_fields(report: Report) -> dict[str, Any]:
    return {name: getattr(report, name) for name in ReportSummary.model_fields}


def report_view(report: Report, template: Template, shown: ReportVersion, signature: Signature | None,
                addenda: list[AddendumView], findings: list[CriticalFinding]) -> ReportView:
    """``shown`` is the version the reader sees; once the report is signed, the signed one, checked against
    the digest that was signed."""
    integrity = Integrity.of(signature.content_sha256, shown.content) if signature else None
    return ReportView(
        **_summary_fields(report), template=TemplateReference(id=template.id, version=template.version,
                                                              name=template.name),
        shown_version=shown.version, content=shown.content, content_sha256=shown.content_sha256,
        signature=signature_view(signature) if signature else None, integrity=integrity_view(integrity),
        addenda=addenda, critical_findings=[finding_view(f) for f in findings])


def version_summary(version: ReportVersion) -> VersionSummary:
    return VersionSummary(version=version.version, author_id=version.author_id, created_at=version.created_at,
                          content_sha256=version.content_sha256)


def version_view(version: ReportVersion) -> VersionView:
    return VersionView(report_id=version.report_id, content=version.content,
                       **version_summary(version).model_dump())


def dispute_view(dispute: Dispute) -> DisputeView:
    return DisputeView(**{name: getattr(dispute, name) for name in DisputeView.model_fields})


def review_view(review: PeerReview) -> PeerReviewView:
    return PeerReviewView(**{name: getattr(review, name) for name in PeerReviewView.model_fields})
