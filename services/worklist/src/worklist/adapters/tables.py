from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def _moment(nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(sa.DateTime(timezone=True), nullable=nullable)


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
    referring_physician_name: str = Field(default="", max_length=324)
    calling_ae_title: str = Field(default="", max_length=16)
    modalities: list[str] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    body_parts: list[str] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    priority: str = Field(max_length=16)
    priority_rank: int = 2
    status: str = Field(max_length=16)
    number_of_series: int
    number_of_instances: int
    received_at: datetime = Field(sa_column=_moment(nullable=False))
    deadline: datetime = Field(sa_column=_moment(nullable=False))
    warn_at: datetime = Field(sa_column=_moment(nullable=False))
    warned_at: datetime | None = Field(default=None, sa_column=_moment())
    breached_at: datetime | None = Field(default=None, sa_column=_moment())
    assignee_id: UUID | None = None
    assigned_at: datetime | None = Field(default=None, sa_column=_moment())
    claimed_by: UUID | None = None
    claimed_at: datetime | None = Field(default=None, sa_column=_moment())
    claim_expires_at: datetime | None = Field(default=None, sa_column=_moment())
    preliminary_at: datetime | None = Field(default=None, sa_column=_moment())
    finalized_at: datetime | None = Field(default=None, sa_column=_moment())
    reported_by: UUID | None = None
    updated_at: datetime = Field(sa_column=_moment(nullable=False))


class SlaPolicyRow(SQLModel, table=True):
    __tablename__ = "sla_policies"
    __table_args__ = (sa.UniqueConstraint("organization_id", "priority", "modality"),)

    id: UUID = Field(primary_key=True)
    organization_id: UUID = Field(index=True)
    priority: str = Field(max_length=16)
    modality: str = Field(max_length=16)
    minutes: float
    warning_fraction: float


class PriorityRuleRow(SQLModel, table=True):
    __tablename__ = "priority_rules"

    id: UUID = Field(primary_key=True)
    organization_id: UUID = Field(index=True)
    position: int
    priority: str = Field(max_length=16)
    modality: str = Field(default="", max_length=16)
    body_part: str = Field(default="", max_length=64)
    description_contains: str = Field(default="", max_length=64)
    calling_ae_title: str = Field(default="", max_length=16)


class ReaderRow(SQLModel, table=True):
    __tablename__ = "readers"

    organization_id: UUID = Field(primary_key=True)
    user_id: UUID = Field(primary_key=True)
    display_name: str = Field(default="", max_length=200)
    modalities: list[str] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    body_parts: list[str] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    available: bool = True
    active: bool = True
    max_open: int | None = None
    last_assigned_at: datetime | None = Field(default=None, sa_column=_moment())


class OrganizationSequenceRow(SQLModel, table=True):
    __tablename__ = "organization_sequences"

    organization_id: UUID = Field(primary_key=True)
    last_sequence: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))


class WorklistChangeRow(SQLModel, table=True):
    __tablename__ = "worklist_changes"

    organization_id: UUID = Field(primary_key=True)
    sequence: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True))
    item_id: UUID
    change: str = Field(max_length=32)
    item: dict[str, object] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    occurred_at: datetime = Field(sa_column=_moment(nullable=False))
