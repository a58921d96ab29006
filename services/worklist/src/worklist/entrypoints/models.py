from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class WorklistQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=10**9)


class WorklistItemView(BaseModel):
    id: UUID
    organization_id: UUID
    study_instance_uid: str
    patient_id: str
    patient_name: str
    accession_number: str
    study_date: date | None
    study_description: str
    modalities: list[str]
    body_parts: list[str]
    priority: str
    status: str
    number_of_series: int
    number_of_instances: int
    received_at: datetime
    updated_at: datetime


class WorklistPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[WorklistItemView]
