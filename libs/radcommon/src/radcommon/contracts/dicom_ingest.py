"""Events published by dicom-ingest."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from radcommon.contracts.envelope import Event

UID = Field(max_length=64, pattern=r"^[0-9]+(\.[0-9]+)*$")


class PriorityValues(StrEnum):
    """Reading priority, from the request's (0040,1003) Requested Procedure Priority."""

    STAT = "stat"
    URGENT = "urgent"
    ROUTINE = "routine"


class StudyReceivedV1(Event):
    """A study has arrived and been quiet for the settle interval: it is ready to be read."""

    routing_key: ClassVar[str] = "dicom-ingest.study.received.v1"
    aggregate: ClassVar[str] = "study_instance_uid"

    study_instance_uid: str = UID
    patient_id: str = Field(default="", max_length=64)
    patient_name: str = Field(default="", max_length=324)
    patient_birth_date: date | None = None
    patient_sex: str = Field(default="", max_length=16)
    accession_number: str = Field(default="", max_length=16)
    study_date: date | None = None
    study_description: str = Field(default="", max_length=64)
    referring_physician_name: str = Field(default="", max_length=324)
    modalities: list[str] = Field(default_factory=list)
    body_parts: list[str] = Field(default_factory=list)
    priority: PriorityValues = PriorityValues.ROUTINE
    number_of_series: int = Field(ge=0)
    number_of_instances: int = Field(ge=0)
    calling_ae_title: str = Field(default="", max_length=16)


class StudyUpdatedV1(StudyReceivedV1):
    """Instances arrived for a study after it was announced; the counts are the new totals."""

    routing_key: ClassVar[str] = "dicom-ingest.study.updated.v1"
