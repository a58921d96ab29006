"""Events published by reporting (the worklist follows them to move an item's status; signature keeps
what was submitted, to sign exactly that)."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import Field

from radcommon.contracts.dicom_ingest import UID
from radcommon.contracts.envelope import Event


class ReportDraftedV1(Event):
    """A radiologist saved a draft of a report (a new version)."""

    routing_key: ClassVar[str] = "reporting.report.drafted.v1"
    aggregate: ClassVar[str] = "report_id"

    report_id: UUID
    study_instance_uid: str = UID
    author_id: UUID
    version: int = Field(ge=1)


SHA256 = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class ReportSubmittedV1(ReportDraftedV1):
    """The radiologist submitted a version (preliminary) or an addendum; it waits for a signature.

    ``content`` is the version's canonical content (what a signature covers) and ``content_sha256``
    its digest; ``addendum_id`` names the addendum when this is one.
    """

    routing_key: ClassVar[str] = "reporting.report.submitted.v1"

    accession_number: str = Field(default="", max_length=16)
    content_sha256: str | None = SHA256
    content: dict[str, object] | None = None
    addendum_id: UUID | None = None


class ReportFinalizedV1(Event):
    """A radiologist signed the report; its text is now legally final."""

    routing_key: ClassVar[str] = "reporting.report.finalized.v1"
    aggregate: ClassVar[str] = "report_id"

    report_id: UUID
    study_instance_uid: str = UID
    accession_number: str = Field(default="", max_length=16)
    signed_by: UUID
    version: int = Field(ge=1)
    signature_id: UUID | None = None


class ReportAddendumAddedV1(Event):
    """A signed addendum was added to a final report."""

    routing_key: ClassVar[str] = "reporting.report.addendum_added.v1"
    aggregate: ClassVar[str] = "report_id"

    report_id: UUID
    study_instance_uid: str = UID
    addendum_id: UUID
    author_id: UUID


class CriticalFindingCategoryValues(StrEnum):
    """ACR actionable-finding categories: how soon the referring physician must hear of it."""

    CRITICAL = "critical"  # minutes: immediate risk to life (e.g. tension pneumothorax)
    URGENT = "urgent"  # hours
    UNEXPECTED = "unexpected"  # days: significant but not urgent (e.g. an incidental mass)


class CriticalFindingFlaggedV1(Event):
    """A radiologist flagged a finding the referring physician must be told of, and acknowledge."""

    routing_key: ClassVar[str] = "reporting.critical_finding.flagged.v1"
    aggregate: ClassVar[str] = "report_id"

    finding_id: UUID
    report_id: UUID
    study_instance_uid: str = UID
    accession_number: str = Field(default="", max_length=16)
    category: CriticalFindingCategoryValues
    description: str = Field(max_length=2000)
    referring_physician_name: str = Field(default="", max_length=324)
    referring_physician_contact: str = Field(default="", max_length=254)
    flagged_by: UUID


class ReportDisputedV1(Event):
    """A referring physician or a manager disputed a final report."""

    routing_key: ClassVar[str] = "reporting.report.disputed.v1"
    aggregate: ClassVar[str] = "report_id"

    dispute_id: UUID
    report_id: UUID
    study_instance_uid: str = UID
    raised_by: UUID
    reason: str = Field(max_length=2000)


class DisputeOutcomeValues(StrEnum):
    RESOLVED = "resolved"  # the report was corrected (an addendum) or the dispute withdrawn
    UPHELD = "upheld"  # the report stands as written


class DisputeResolvedV1(Event):
    """A dispute ended."""

    routing_key: ClassVar[str] = "reporting.dispute.resolved.v1"
    aggregate: ClassVar[str] = "report_id"

    dispute_id: UUID
    report_id: UUID
    outcome: DisputeOutcomeValues
    resolved_by: UUID
