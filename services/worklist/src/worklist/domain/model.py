from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from uuid import UUID, uuid4

from radcommon.contracts import StudyReceivedV1


class StatusValues(StrEnum):
    RECEIVED = "received"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    PRELIMINARY = "preliminary"
    FINAL = "final"
    AMENDED = "amended"


@dataclass
class WorklistItem:
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
    number_of_series: int
    number_of_instances: int
    received_at: datetime
    id: UUID = field(default_factory=uuid4)
    status: StatusValues = StatusValues.RECEIVED
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def for_study(cls, event: StudyReceivedV1) -> WorklistItem:
        return cls(
            organization_id=event.organization_id,
            study_instance_uid=event.study_instance_uid,
            patient_id=event.patient_id,
            patient_name=event.patient_name,
            accession_number=event.accession_number,
            study_date=event.study_date,
            study_description=event.study_description,
            modalities=list(event.modalities),
            body_parts=list(event.body_parts),
            priority=event.priority.value,
            number_of_series=event.number_of_series,
            number_of_instances=event.number_of_instances,
            received_at=event.occurred_at,
        )

    def study_changed(self, event: StudyReceivedV1) -> None:
        """Late instances, or a re-announcement: the study's latest totals and descriptors win."""
        update = WorklistItem.for_study(event)
        for name in ("patient_id", "patient_name", "accession_number", "study_date", "study_description",
                     "modalities", "body_parts", "number_of_series", "number_of_instances"):
            setattr(self, name, getattr(update, name))
        self.updated_at = datetime.now(UTC)
