from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class WorklistItemRow(SQLModel, table=True):
    __tablename__ = "worklist_items"
    __table_args__ = (sa.UniqueConstraint("organization_id", "study_instance_uid"),)

    id: UUID = Field(primary_key=True)
    organization_id: UUID = Field(index=True)
    study_instance_uid: str = Field(max_length=64)
    patient_id: str = Field(max_length=64)
    patient_name: str = Field(max_length=324)
    accession_number: str = Field(max_length=16)
    study_date: date | None = None
    study_description: str = Field(max_length=64)
    modalities: list[str] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    body_parts: list[str] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    priority: str = Field(max_length=16)
    status: str = Field(max_length=16)
    number_of_series: int
    number_of_instances: int
    received_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
