from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

#: Reports that are still being written: one per study at a time.
OPEN_REPORT = "status IN ('draft', 'preliminary')"


def _moment(nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(sa.DateTime(timezone=True), nullable=nullable)


def _json() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(sa.JSON, nullable=False)


class TemplateRow(SQLModel, table=True):
    __tablename__ = "report_templates"
    __table_args__ = (sa.UniqueConstraint("organization_id", "name"),)

    id: UUID = Field(primary_key=True)
    organization_id: UUID = Field(index=True)
    name: str = Field(max_length=200)
    modality: str = Field(default="", max_length=16)
    body_part: str = Field(default="", max_length=64)
    version: int
    active: bool = True
    updated_at: datetime = Field(sa_column=_moment(nullable=False))


class TemplateVersionRow(SQLModel, table=True):
    __tablename__ = "report_template_versions"

    template_id: UUID = Field(primary_key=True)
    version: int = Field(primary_key=True)
    organization_id: UUID
    name: str = Field(max_length=200)
    modality: str = Field(default="", max_length=16)
    body_part: str = Field(default="", max_length=64)
    sections: list[dict[str, Any]] = Field(sa_column=_json())
    created_by: UUID | None = None
    created_at: datetime = Field(sa_column=_moment(nullable=False))


class TemplateSeedRow(SQLModel, table=True):
    """Organisations that were given the default templates (once, even if they delete them all later)."""

    __tablename__ = "report_template_seeds"

    organization_id: UUID = Field(primary_key=True)
    seeded_at: datetime = Field(sa_column=_moment(nullable=False))


class WorklistItemRow(SQLModel, table=True):
    """The projection of worklist.item.changed: who claims which study."""

    __tablename__ = "reporting_worklist_items"

    id: UUID = Field(primary_key=True)
    organization_id: UUID = Field(index=True)
    sequence: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    study_instance_uid: str = Field(max_length=64)
    accession_number: str = Field(default="", max_length=16)
    status: str = Field(max_length=16)
    assignee_id: UUID | None = None
    claimed_by: UUID | None = None
    claim_expires_at: datetime | None = Field(default=None, sa_column=_moment())
    modalities: list[str] = Field(sa_column=_json())
    body_parts: list[str] = Field(sa_column=_json())
    referring_physician_name: str = Field(default="", max_length=324)
    patient_name: str = Field(default="", max_length=324)
    patient_id: str = Field(default="", max_length=64)


class ReportRow(SQLModel, table=True):
    __tablename__ = "reports"
    __table_args__ = (
        sa.Index("reports_one_open_per_study", "organization_id", "study_instance_uid", unique=True,
                 postgresql_where=sa.text(OPEN_REPORT), sqlite_where=sa.text(OPEN_REPORT)),
        sa.Index("reports_org_study", "organization_id", "study_instance_uid"),
        sa.Index("reports_org_status", "organization_id", "status", "updated_at"),
    )

    id: UUID = Field(primary_key=True)
    organization_id: UUID
    worklist_item_id: UUID
    study_instance_uid: str = Field(max_length=64)
    accession_number: str = Field(default="", max_length=16)
    patient_name: str = Field(default="", max_length=324)
    patient_id: str = Field(default="", max_length=64)
    referring_physician_name: str = Field(default="", max_length=324)
    template_id: UUID
    template_version: int
    author_id: UUID
    status: str = Field(max_length=16)
    version: int
    submitted_version: int | None = None
    submitted_sha256: str | None = Field(default=None, max_length=64)
    final_version: int | None = None
    signature_id: UUID | None = None
    created_at: datetime = Field(sa_column=_moment(nullable=False))
    updated_at: datetime = Field(sa_column=_moment(nullable=False))
    submitted_at: datetime | None = Field(default=None, sa_column=_moment())
    finalized_at: datetime | None = Field(default=None, sa_column=_moment())


class ReportVersionRow(SQLModel, table=True):
    """Immutable: one row per saved change."""

    __tablename__ = "report_versions"

    report_id: UUID = Field(primary_key=True)
    version: int = Field(primary_key=True)
    organization_id: UUID
    author_id: UUID
    content: dict[str, Any] = Field(sa_column=_json())
    content_sha256: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=_moment(nullable=False))


class AddendumRow(SQLModel, table=True):
    __tablename__ = "report_addenda"

    id: UUID = Field(primary_key=True)
    organization_id: UUID
    report_id: UUID = Field(index=True)
    author_id: UUID
    text: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    of_version: int
    status: str = Field(max_length=16)
    content_sha256: str = Field(max_length=64)
    signature_id: UUID | None = None
    created_at: datetime = Field(sa_column=_moment(nullable=False))
    signed_at: datetime | None = Field(default=None, sa_column=_moment())


class SignatureRow(SQLModel, table=True):
    """The signatures that took effect, kept for their manifestation (signer's name, time, meaning)."""

    __tablename__ = "report_signatures"

    signature_id: UUID = Field(primary_key=True)
    organization_id: UUID
    report_id: UUID = Field(index=True)
    addendum_id: UUID | None = None
    version: int
    content_sha256: str = Field(max_length=64)
    signer_id: UUID
    signer_name: str = Field(max_length=200)
    meaning: str = Field(max_length=16)
    signed_at: datetime = Field(sa_column=_moment(nullable=False))


class CriticalFindingRow(SQLModel, table=True):
    __tablename__ = "critical_findings"

    id: UUID = Field(primary_key=True)
    organization_id: UUID
    report_id: UUID = Field(index=True)
    category: str = Field(max_length=16)
    description: str = Field(max_length=2000)
    referring_physician_name: str = Field(default="", max_length=324)
    referring_physician_contact: str = Field(default="", max_length=254)
    flagged_by: UUID
    flagged_at: datetime = Field(sa_column=_moment(nullable=False))


class DisputeRow(SQLModel, table=True):
    __tablename__ = "report_disputes"

    id: UUID = Field(primary_key=True)
    organization_id: UUID
    report_id: UUID = Field(index=True)
    raised_by: UUID
    reason: str = Field(max_length=2000)
    raised_at: datetime = Field(sa_column=_moment(nullable=False))
    status: str = Field(max_length=16)
    response: str | None = Field(default=None, max_length=2000)
    responded_by: UUID | None = None
    responded_at: datetime | None = Field(default=None, sa_column=_moment())
    outcome: str | None = Field(default=None, max_length=16)
    note: str | None = Field(default=None, max_length=2000)
    resolved_by: UUID | None = None
    resolved_at: datetime | None = Field(default=None, sa_column=_moment())


class PeerReviewRow(SQLModel, table=True):
    __tablename__ = "peer_reviews"
    __table_args__ = (sa.UniqueConstraint("report_id", "reviewer_id"),
                      sa.Index("peer_reviews_org_radiologist", "organization_id", "radiologist_id"))

    id: UUID = Field(primary_key=True)
    organization_id: UUID
    report_id: UUID
    radiologist_id: UUID
    reviewer_id: UUID
    score: str = Field(max_length=2)
    comment: str = Field(default="", max_length=2000)
    reviewed_at: datetime = Field(sa_column=_moment(nullable=False))
