from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from dicom_ingest.domain.modalities import normalize_ae_title
from dicom_ingest.domain.remote_pacs import (
    MAX_FIND_KEYS,
    FindLevelValues,
    Job,
    JobOperationValues,
    JobStatusValues,
    RemotePacs,
    RetrieveMethodValues,
    is_uid,
    parse_remote_host,
)

_AE_TITLE = "1-16 printable ASCII characters, no backslash (PS3.5 VR AE); spaces at either end are not significant."


class RemotePacsRegistration(BaseModel):
    """A remote PACS of the caller's organisation: Telerad queries it, retrieves from it and sends to it."""

    model_config = ConfigDict(extra="forbid")

    ae_title: str = Field(min_length=1, max_length=64, examples=["ORTHANC"], description=f"Its AE title: {_AE_TITLE}")
    host: str = Field(min_length=1, max_length=253, examples=["pacs.hospital.example"],
                      description="Its IP address or DNS host name. C-MOVE sub-operations are expected from the "
                                  "address it resolves to now.")
    port: int = Field(ge=1, le=65535, examples=[4242], description="The port of its DIMSE service.")
    description: str = Field(default="", max_length=200)
    calling_ae_title: str | None = Field(
        default=None, min_length=1, max_length=64, examples=["TELERAD"],
        description=f"The AE title Telerad calls it with; default Telerad's own (DICOM_INGEST_AE_TITLE). {_AE_TITLE}")

    @field_validator("ae_title", "calling_ae_title")
    @classmethod
    def _valid_ae_title(cls, value: str | None) -> str | None:
        return None if value is None else normalize_ae_title(value)

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str) -> str:
        return parse_remote_host(value)

    @field_validator("description")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("the description may not contain control characters")
        return value


class RemotePacsView(BaseModel):
    id: UUID
    ae_title: str
    host: str
    port: int
    description: str
    calling_ae_title: str | None = Field(description="The AE title Telerad calls it with; null for Telerad's own.")
    modality_id: UUID | None = Field(
        description="The modality registered for it so that its C-MOVE sub-operations are accepted (removed with "
                    "it); null when the organisation had registered its AE title at that address already.")
    created_at: datetime

    @classmethod
    def of(cls, remote: RemotePacs) -> RemotePacsView:
        return cls(id=remote.id, ae_title=remote.ae_title, host=remote.host, port=remote.port,
                   description=remote.description, calling_ae_title=remote.calling_ae_title,
                   modality_id=remote.modality_id, created_at=remote.created_at)


class RemotePacsList(BaseModel):
    items: list[RemotePacsView]


class RemotePacsPath(BaseModel):
    remote_pacs_id: UUID


class JobPath(BaseModel):
    job_id: UUID


class EchoView(BaseModel):
    success: bool = Field(description="Whether the remote PACS answered the C-ECHO with Success.")
    status: int | None = Field(description="The C-ECHO response status; null when there was no answer.")
    detail: str
    elapsed_ms: int


class FindRequest(BaseModel):
    """A Study Root C-FIND: matching keys by DICOM keyword, empty values asking for the attribute back."""

    model_config = ConfigDict(extra="forbid")

    level: FindLevelValues = FindLevelValues.STUDY
    keys: dict[str, str] = Field(
        default_factory=dict, max_length=MAX_FIND_KEYS,
        examples=[{"PatientID": "PAT*", "StudyDate": "20240101-20240131", "ModalitiesInStudy": "CT"}],
        description="Keyword to value: single values, `*`/`?` wild cards, backslash-separated UID lists, date and "
                    "time ranges (`20240101-`, `-20240131`). SERIES queries need StudyInstanceUID, IMAGE queries "
                    "StudyInstanceUID and SeriesInstanceUID. The usual attributes of the level come back unasked.")
    limit: int = Field(default=100, ge=1, le=1000, description="Matches at most; the rest is cancelled (C-CANCEL).")


class FindResult(BaseModel):
    matches: list[dict[str, Any]] = Field(description="One object per match, in the DICOM JSON Model (PS3.18 "
                                                      "Annex F), as QIDO-RS answers.")
    truncated: bool = Field(description="The limit was reached: there may be more matches.")


def _uid(value: str) -> str:
    if not is_uid(value):
        raise ValueError("not a UID")
    return value


Uid = Annotated[str, AfterValidator(_uid)]


class RetrieveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    study_instance_uid: Uid = Field(max_length=64, examples=["1.2.826.0.1.3680043.10.1234.1"])
    series_instance_uid: Uid | None = Field(default=None, max_length=64,
                                            description="Only this series of the study.")
    method: RetrieveMethodValues = Field(
        default=RetrieveMethodValues.MOVE,
        description="`move`: C-MOVE to Telerad's AE title (the remote PACS must know Telerad's AE title, host and "
                    "port); `get`: C-GET, the instances come back on Telerad's association.")


class SendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    study_instance_uid: Uid = Field(max_length=64, examples=["1.2.826.0.1.3680043.10.1234.1"])
    series_instance_uid: Uid | None = Field(default=None, max_length=64,
                                            description="Only this series of the study.")


class FailureView(BaseModel):
    sop_instance_uid: str
    reason: str


class JobView(BaseModel):
    id: UUID
    remote_pacs_id: UUID
    remote_ae_title: str
    operation: JobOperationValues = Field(description="`move` and `get` retrieve, `send` stores to the remote PACS.")
    status: JobStatusValues
    study_instance_uid: str
    series_instance_uid: str | None
    requested_by: UUID | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    completed: int = Field(description="C-STORE sub-operations that succeeded.")
    failed: int
    warning: int
    remaining: int | None = Field(description="Sub-operations still to go; null until known.")
    failures: list[FailureView] = Field(description="Failed instances with the reason (the first 1000).")
    final_status: int | None = Field(description="The final C-MOVE/C-GET response status, when one came.")
    detail: str | None = Field(description="Why the job failed, was interrupted, or completed with failures.")

    @classmethod
    def of(cls, job: Job) -> JobView:
        return cls(id=job.id, remote_pacs_id=job.remote_pacs_id, remote_ae_title=job.remote_ae_title,
                   operation=job.operation, status=job.status, study_instance_uid=job.study_instance_uid,
                   series_instance_uid=job.series_instance_uid, requested_by=job.requested_by,
                   created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
                   completed=job.counts.completed, failed=job.counts.failed, warning=job.counts.warning,
                   remaining=job.counts.remaining,
                   failures=[FailureView(sop_instance_uid=f.sop_instance_uid, reason=f.reason) for f in job.failures],
                   final_status=job.final_status, detail=job.detail)


class JobList(BaseModel):
    items: list[JobView]


class JobListQuery(BaseModel):
    limit: int = Field(default=50, ge=1, le=500)
