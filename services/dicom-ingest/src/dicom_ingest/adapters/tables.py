"""The study index: patient, study, series, instance (PS3.3 Annex C.7 entity levels).

The indexes named here are those C-FIND and QIDO-RS search by (migration 0003); Patient's Name is
also indexed as ``lower(patient_name)``, which it is matched by.
"""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def _aware() -> sa.Column[datetime]:
    return sa.Column(sa.DateTime(timezone=True), nullable=False)


class PatientRow(SQLModel, table=True):
    __tablename__ = "patients"
    __table_args__ = (sa.UniqueConstraint("organization_id", "patient_id", "issuer_of_patient_id"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    organization_id: UUID
    patient_id: str = Field(max_length=64)
    issuer_of_patient_id: str = Field(max_length=64)
    patient_name: str = Field(max_length=324)
    patient_birth_date: date | None = None
    patient_sex: str = Field(max_length=16)


class StudyRow(SQLModel, table=True):
    __tablename__ = "studies"
    __table_args__ = (sa.UniqueConstraint("organization_id", "study_instance_uid"),
                      sa.Index("studies_by_date", "organization_id", "study_date"),
                      sa.Index("studies_by_accession_number", "organization_id", "accession_number"),
                      sa.Index("studies_by_patient", "patient_ref"))

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    organization_id: UUID
    study_instance_uid: str = Field(max_length=64)
    patient_ref: UUID = Field(foreign_key="patients.id")
    accession_number: str = Field(max_length=16)
    study_id: str = Field(max_length=16)
    study_date: date | None = None
    study_time: str = Field(max_length=16)
    study_description: str = Field(max_length=64)
    referring_physician_name: str = Field(max_length=324)
    modalities: list[str] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    body_parts: list[str] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    priority: str = Field(max_length=16)
    calling_ae_title: str = Field(max_length=16)
    number_of_series: int = 0
    number_of_instances: int = 0
    first_received_at: datetime = Field(sa_column=_aware())
    last_received_at: datetime = Field(sa_column=_aware())
    announced_instances: int = 0
    #: Bumped when an instance is replaced (duplicate_policy overwrite), which changes no count (migration 0006).
    revision: int = 0
    announced_revision: int = 0
    announced_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))


class SeriesRow(SQLModel, table=True):
    __tablename__ = "series"
    __table_args__ = (sa.UniqueConstraint("organization_id", "series_instance_uid"),
                      sa.Index("series_by_modality", "organization_id", "modality"))

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    organization_id: UUID
    study_ref: UUID = Field(foreign_key="studies.id", index=True)
    series_instance_uid: str = Field(max_length=64)
    modality: str = Field(max_length=16)
    series_number: int | None = None
    series_description: str = Field(max_length=64)
    body_part_examined: str = Field(max_length=16)
    number_of_instances: int = 0


class InstanceRow(SQLModel, table=True):
    __tablename__ = "instances"
    __table_args__ = (sa.UniqueConstraint("organization_id", "sop_instance_uid"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    organization_id: UUID
    study_ref: UUID = Field(foreign_key="studies.id", index=True)
    series_ref: UUID = Field(foreign_key="series.id", index=True)
    sop_instance_uid: str = Field(max_length=64)
    sop_class_uid: str = Field(max_length=64)
    transfer_syntax_uid: str = Field(max_length=64)
    instance_number: int | None = None
    number_of_frames: int | None = None
    storage_key: str = Field(max_length=64, index=True)
    size_bytes: int
    received_at: datetime = Field(sa_column=_aware())
