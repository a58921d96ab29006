"""What reporting knows of the worklist: who currently claims which study (a projection of its changes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from radcommon.contracts import WorklistStatusValues


@dataclass
class WorklistItem:
    id: UUID
    organization_id: UUID
    sequence: int
    study_instance_uid: str
    accession_number: str = ""
    status: WorklistStatusValues = WorklistStatusValues.RECEIVED
    assignee_id: UUID | None = None
    claimed_by: UUID | None = None
    claim_expires_at: datetime | None = None
    modalities: list[str] = field(default_factory=list)
    body_parts: list[str] = field(default_factory=list)
    referring_physician_name: str = ""
    patient_name: str = ""
    patient_id: str = ""

    def claimed_by_now(self, radiologist_id: UUID, now: datetime) -> bool:
        """The worklist says this radiologist is reading the study (its claim has not lapsed)."""
        return (self.status is WorklistStatusValues.IN_PROGRESS and self.claimed_by == radiologist_id
                and (self.claim_expires_at is None or self.claim_expires_at > now))
