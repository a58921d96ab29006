from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from radcommon.contracts import PriorityValues, WorklistStatusValues


class SortValues(StrEnum):
    DEADLINE = "deadline"
    PRIORITY = "priority"
    RECEIVED = "received"
    NEWEST = "-received"
    LATEST_DEADLINE = "-deadline"


def _split(value: object) -> object:
    """Repeated (?status=a&status=b) or comma-separated (?status=a,b): both mean a list."""
    if isinstance(value, str):
        return [part for part in value.split(",") if part]
    if isinstance(value, list):
        return [part for v in value for part in str(v).split(",") if part]
    return value


class WorklistQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: list[WorklistStatusValues] = Field(default_factory=list, max_length=6)
    priority: list[PriorityValues] = Field(default_factory=list, max_length=3)
    modality: str | None = Field(default=None, max_length=16, pattern=r"^[A-Za-z0-9]+$")
    body_part: str | None = Field(default=None, max_length=64)
    assignee: UUID | Literal["me", "none"] | None = None
    received_from: date | None = None
    received_to: date | None = None
    patient: str | None = Field(default=None, min_length=1, max_length=64,
                                description="part of the patient's name, or the patient ID")
    accession: str | None = Field(default=None, min_length=1, max_length=16)
    sla: Literal["on_time", "warning", "breached"] | None = None
    sort: SortValues = SortValues.PRIORITY
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=10**6)

    @field_validator("status", "priority", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split(value)


class WorklistItemView(BaseModel):
    id: UUID
    organization_id: UUID
    study_instance_uid: str
    patient_id: str
    patient_name: str
    accession_number: str
    study_date: date | None
    study_description: str
    referring_physician_name: str
    modalities: list[str]
    body_parts: list[str]
    priority: PriorityValues
    status: WorklistStatusValues
    number_of_series: int
    number_of_instances: int
    received_at: datetime
    deadline: datetime
    warn_at: datetime
    sla_state: Literal["on_time", "warning", "breached", "met", "missed"]
    warned_at: datetime | None
    breached_at: datetime | None
    assignee_id: UUID | None
    assigned_at: datetime | None
    claimed_by: UUID | None
    claimed_at: datetime | None
    claim_expires_at: datetime | None
    preliminary_at: datetime | None
    finalized_at: datetime | None
    reported_by: UUID | None
    updated_at: datetime


class WorklistPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[WorklistItemView]


class WorklistCounts(BaseModel):
    total_open: int
    by_status: dict[str, int]
    by_priority: dict[str, int]
    unassigned: int
    mine: int
    warning: int
    breached: int


class StatsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    finalized_from: date | None = None
    finalized_to: date | None = None


class Turnaround(BaseModel):
    reports: int
    median_minutes: float | None
    p90_minutes: float | None
    met_sla: int
    sla_compliance: float | None = Field(description="share of final reports signed before their deadline")


class ReaderTurnaround(Turnaround):
    user_id: UUID
    display_name: str


class WorklistStats(BaseModel):
    organization: Turnaround
    by_priority: dict[str, Turnaround]
    by_radiologist: list[ReaderTurnaround]
    open_breached: int


class ChangesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after: int = Field(default=0, ge=0, le=2**63 - 1)
    limit: int = Field(default=100, ge=1, le=500)


class WorklistChange(BaseModel):
    sequence: int
    item_id: UUID
    change: str
    item: WorklistItemView


class ChangesPage(BaseModel):
    changes: list[WorklistChange]
    last_sequence: int


class AssignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee_id: UUID


class PriorityRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: PriorityValues


class SlaPolicyView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: PriorityValues
    modality: str = Field(default="*", max_length=16, pattern=r"^(\*|[A-Z0-9]+)$")
    minutes: float = Field(gt=0, le=60 * 24 * 365)
    warning_fraction: float = Field(default=0.75, gt=0, lt=1)


class SlaPolicies(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policies: list[SlaPolicyView] = Field(max_length=200)
    defaults: list[SlaPolicyView] = Field(default_factory=list, description="used where no policy matches")


class PriorityRuleView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: PriorityValues
    modality: str = Field(default="", max_length=16)
    body_part: str = Field(default="", max_length=64)
    description_contains: str = Field(default="", max_length=64)
    calling_ae_title: str = Field(default="", max_length=16)


class PriorityRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[PriorityRuleView] = Field(max_length=200)


class ReaderView(BaseModel):
    user_id: UUID
    display_name: str
    modalities: list[str]
    body_parts: list[str]
    available: bool
    active: bool
    max_open: int | None
    open_items: int = 0


class ReaderList(BaseModel):
    readers: list[ReaderView]


class ReaderUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(default=None, max_length=200)
    modalities: list[str] | None = Field(default=None, max_length=50)
    body_parts: list[str] | None = Field(default=None, max_length=100)
    available: bool | None = None
    max_open: int | None = Field(default=None, ge=1, le=10_000)

    @model_validator(mode="after")
    def _only_the_cap_may_be_cleared(self) -> ReaderUpdate:
        cleared = [name for name in self.model_fields_set if getattr(self, name) is None and name != "max_open"]
        if cleared:
            raise ValueError(f"{', '.join(sorted(cleared))} cannot be null (leave it out to keep it)")
        return self

    @field_validator("modalities", "body_parts")
    @classmethod
    def _codes(cls, values: list[str] | None) -> list[str] | None:
        if values is not None and any(not v or len(v) > 64 or not v.replace("_", "").isalnum() for v in values):
            raise ValueError("codes are letters and digits (CT, MR, CHEST, HEAD)")
        return values


class AvailabilityUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    available: bool
