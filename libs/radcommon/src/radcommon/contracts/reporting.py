"""Events published by reporting (the worklist follows them to move an item's status)."""

from __future__ import annotations

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


class ReportSubmittedV1(ReportDraftedV1):
    """The radiologist submitted the report as preliminary; it waits for signature."""

    routing_key: ClassVar[str] = "reporting.report.submitted.v1"


class ReportFinalizedV1(Event):
    """A radiologist signed the report; its text is now legally final."""

    routing_key: ClassVar[str] = "reporting.report.finalized.v1"
    aggregate: ClassVar[str] = "report_id"

    report_id: UUID
    study_instance_uid: str = UID
    accession_number: str = Field(default="", max_length=16)
    signed_by: UUID
    version: int = Field(ge=1)


class ReportAddendumAddedV1(Event):
    """A signed addendum was added to a final report."""

    routing_key: ClassVar[str] = "reporting.report.addendum_added.v1"
    aggregate: ClassVar[str] = "report_id"

    report_id: UUID
    study_instance_uid: str = UID
    addendum_id: UUID
    author_id: UUID
