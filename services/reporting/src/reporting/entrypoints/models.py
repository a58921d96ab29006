from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from radcommon.contracts import (
    CriticalFindingCategoryValues,
    DisputeOutcomeValues,
    SignatureMeaningValues,
)
from reporting.domain.quality import DisputeStatusValues, RadpeerScoreValues
from reporting.domain.report import AddendumStatusValues, ReportStatusValues
from reporting.domain.templates import MAX_SECTIONS, AnnotationKindValues, SectionKindValues

Value = StrictStr | StrictInt | StrictFloat | None
Coordinate = Annotated[float, Field(allow_inf_nan=False)]
UID = Field(max_length=64, pattern=r"^[0-9]+(\.[0-9]+)*$")


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SectionModel(Request):
    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="the key of the section's value in content")
    title: str = Field(min_length=1, max_length=200)
    kind: SectionKindValues = SectionKindValues.TEXT
    options: list[str] = Field(default_factory=list, max_length=100, description="a choice's pick-list")
    default: Value = None
    required: bool = Field(default=False, description="must be filled in to submit")


class TemplateRequest(Request):
    name: str = Field(min_length=1, max_length=200)
    modality: str = Field(default="", max_length=16)
    body_part: str = Field(default="", max_length=64)
    sections: list[SectionModel] = Field(min_length=1, max_length=MAX_SECTIONS)


class TemplateView(BaseModel):
    id: UUID
    organization_id: UUID
    name: str
    modality: str
    body_part: str
    version: int
    active: bool
    sections: list[SectionModel]
    created_by: UUID | None
    created_at: datetime = Field(description="when this version was written")


class TemplateList(BaseModel):
    templates: list[TemplateView]


class TemplatesQuery(Request):
    modality: str | None = Field(default=None, max_length=16)
    body_part: str | None = Field(default=None, max_length=64)
    include_inactive: bool = False


class ActiveRequest(Request):
    active: bool


class AnnotationModel(Request):
    sop_instance_uid: str = UID
    frame_number: int | None = Field(default=None, ge=1)
    coordinates: list[Annotated[list[Coordinate], Field(min_length=2, max_length=2)]] = Field(
        min_length=1, max_length=1000, description="image (column, row) pairs")
    kind: AnnotationKindValues
    label: str = Field(default="", max_length=200)


class ContentModel(Request):
    sections: dict[str, Value] = Field(default_factory=dict, max_length=MAX_SECTIONS)
    annotations: list[AnnotationModel] = Field(default_factory=list, max_length=500)


class CreateReportRequest(Request):
    worklist_item_id: UUID
    template_id: UUID


class DraftRequest(Request):
    content: ContentModel
    base_version: int = Field(ge=1, description="the version this content was edited from: the newest")


class SubmitRequest(Request):
    version: int = Field(ge=1, description="the version to submit: the newest")


class SignatureView(BaseModel):
    signature_id: UUID
    signer_id: UUID
    signer_name: str
    meaning: SignatureMeaningValues
    signed_at: datetime
    version: int
    content_sha256: str


class IntegrityView(BaseModel):
    signed_digest: str
    current_digest: str = Field(description="SHA-256 of the stored content's canonical form, computed now")
    intact: bool


class AddendumView(BaseModel):
    id: UUID
    report_id: UUID
    author_id: UUID
    text: str
    of_version: int
    status: AddendumStatusValues
    content_sha256: str
    created_at: datetime
    signature: SignatureView | None = None
    integrity: IntegrityView | None = None


class CriticalFindingView(BaseModel):
    id: UUID
    report_id: UUID
    category: CriticalFindingCategoryValues
    description: str
    referring_physician_name: str
    referring_physician_contact: str
    flagged_by: UUID
    flagged_at: datetime


class TemplateReference(BaseModel):
    id: UUID
    version: int
    name: str


class ReportSummary(BaseModel):
    id: UUID
    organization_id: UUID
    worklist_item_id: UUID
    study_instance_uid: str
    accession_number: str
    patient_name: str
    patient_id: str
    referring_physician_name: str
    author_id: UUID
    status: ReportStatusValues
    version: int = Field(description="the newest version")
    submitted_version: int | None
    final_version: int | None
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    finalized_at: datetime | None


class ReportView(ReportSummary):
    template: TemplateReference
    shown_version: int = Field(description="the version content is of: the final one once signed")
    content: dict[str, object]
    content_sha256: str
    signature: SignatureView | None
    integrity: IntegrityView | None
    addenda: list[AddendumView]
    critical_findings: list[CriticalFindingView]


class ReportList(BaseModel):
    total: int
    limit: int
    offset: int
    reports: list[ReportSummary]


class ReportsQuery(Request):
    study_instance_uid: str | None = Field(default=None, max_length=64, pattern=r"^[0-9]+(\.[0-9]+)*$")
    status: ReportStatusValues | None = None
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=10**6)


class VersionSummary(BaseModel):
    version: int
    author_id: UUID
    created_at: datetime
    content_sha256: str


class VersionView(VersionSummary):
    report_id: UUID
    content: dict[str, object]


class VersionList(BaseModel):
    versions: list[VersionSummary]


class AddendumRequest(Request):
    text: str = Field(min_length=1, max_length=20_000)


class CriticalFindingRequest(Request):
    category: CriticalFindingCategoryValues
    description: str = Field(min_length=1, max_length=2000)
    referring_physician_name: str = Field(default="", max_length=324,
                                          description="the study's referring physician when left out")
    referring_physician_contact: str = Field(default="", max_length=254)


class DisputeRequest(Request):
    reason: str = Field(min_length=1, max_length=2000)


class DisputeResponseRequest(Request):
    text: str = Field(min_length=1, max_length=2000)


class DisputeResolution(Request):
    outcome: DisputeOutcomeValues
    note: str = Field(default="", max_length=2000)


class DisputeView(BaseModel):
    id: UUID
    report_id: UUID
    raised_by: UUID
    reason: str
    raised_at: datetime
    status: DisputeStatusValues
    response: str | None
    responded_by: UUID | None
    responded_at: datetime | None
    outcome: DisputeOutcomeValues | None
    note: str | None
    resolved_by: UUID | None
    resolved_at: datetime | None


class DisputeList(BaseModel):
    disputes: list[DisputeView]


class PeerReviewRequest(Request):
    score: RadpeerScoreValues
    comment: str = Field(default="", max_length=2000)


class PeerReviewView(BaseModel):
    id: UUID
    report_id: UUID
    radiologist_id: UUID
    reviewer_id: UUID
    score: RadpeerScoreValues
    comment: str
    reviewed_at: datetime


class StatsQuery(Request):
    reviewed_from: date | None = None
    reviewed_to: date | None = None


class PeerReviewSummary(BaseModel):
    reviews: int
    scores: dict[str, int] = Field(description="count per RADPEER score (1, 2a, 2b, 3a, 3b)")
    significant: int = Field(description="2b, 3a and 3b: significant discrepancies")
    significant_share: float | None


class RadiologistPeerReview(PeerReviewSummary):
    radiologist_id: UUID


class PeerReviewStats(BaseModel):
    organization: PeerReviewSummary
    radiologists: list[RadiologistPeerReview]
