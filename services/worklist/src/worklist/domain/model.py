"""A study on the worklist: its deadline, who reads it, and where its report stands.

The status follows the report: received → assigned → in_progress → preliminary → final → amended.
A claim is the radiologist's "I am reading this now": one at a time, until released or expired.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

from radcommon.contracts import PriorityValues, StudyReceivedV1, WorklistStatusValues

StatusValues = WorklistStatusValues

OPEN = frozenset({StatusValues.RECEIVED, StatusValues.ASSIGNED, StatusValues.IN_PROGRESS})
#: Still waiting for a final report, so still on the SLA clock.
ALERTABLE = frozenset(OPEN | {StatusValues.PRELIMINARY})
REPORTED = frozenset({StatusValues.FINAL, StatusValues.AMENDED})
PRIORITY_RANK = {PriorityValues.STAT: 0, PriorityValues.URGENT: 1, PriorityValues.ROUTINE: 2}

#: Which status may follow which; anything else is an illegal transition.
TRANSITIONS: dict[StatusValues, frozenset[StatusValues]] = {
    StatusValues.RECEIVED: frozenset({StatusValues.ASSIGNED, StatusValues.IN_PROGRESS, StatusValues.PRELIMINARY,
                                      StatusValues.FINAL}),
    StatusValues.ASSIGNED: frozenset({StatusValues.ASSIGNED, StatusValues.RECEIVED, StatusValues.IN_PROGRESS,
                                      StatusValues.PRELIMINARY, StatusValues.FINAL}),
    StatusValues.IN_PROGRESS: frozenset({StatusValues.ASSIGNED, StatusValues.RECEIVED, StatusValues.IN_PROGRESS,
                                         StatusValues.PRELIMINARY, StatusValues.FINAL}),
    StatusValues.PRELIMINARY: frozenset({StatusValues.FINAL}),
    StatusValues.FINAL: frozenset({StatusValues.AMENDED}),
    StatusValues.AMENDED: frozenset({StatusValues.AMENDED}),
}


class WorklistError(Exception):
    pass


class IllegalTransition(WorklistError):
    def __init__(self, current: StatusValues, wanted: StatusValues) -> None:
        super().__init__(f"an item that is {current.value} cannot become {wanted.value}")
        self.current, self.wanted = current, wanted


class AlreadyClaimed(WorklistError):
    pass


class NotYours(WorklistError):
    pass


@dataclass
class Deadline:
    due_at: datetime
    warn_at: datetime


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
    priority: PriorityValues
    number_of_series: int
    number_of_instances: int
    received_at: datetime
    deadline: datetime
    warn_at: datetime
    id: UUID = field(default_factory=uuid4)
    status: StatusValues = StatusValues.RECEIVED
    referring_physician_name: str = ""
    calling_ae_title: str = ""
    assignee_id: UUID | None = None
    assigned_at: datetime | None = None
    claimed_by: UUID | None = None
    claimed_at: datetime | None = None
    claim_expires_at: datetime | None = None
    warned_at: datetime | None = None
    breached_at: datetime | None = None
    preliminary_at: datetime | None = None
    finalized_at: datetime | None = None
    reported_by: UUID | None = None
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def for_study(cls, event: StudyReceivedV1, priority: PriorityValues, deadline: Deadline) -> WorklistItem:
        return cls(
            organization_id=event.organization_id, study_instance_uid=event.study_instance_uid,
            patient_id=event.patient_id, patient_name=event.patient_name,
            accession_number=event.accession_number, study_date=event.study_date,
            study_description=event.study_description, modalities=list(event.modalities),
            body_parts=list(event.body_parts), priority=priority,
            number_of_series=event.number_of_series, number_of_instances=event.number_of_instances,
            received_at=event.occurred_at, deadline=deadline.due_at, warn_at=deadline.warn_at,
            referring_physician_name=event.referring_physician_name, calling_ae_title=event.calling_ae_title,
        )

    @property
    def open(self) -> bool:
        return self.status in OPEN

    def study_changed(self, event: StudyReceivedV1) -> None:
        """Late instances, or a re-announcement: the study's latest totals and descriptors win."""
        for name in ("patient_id", "patient_name", "accession_number", "study_date", "study_description",
                     "referring_physician_name", "number_of_series", "number_of_instances"):
            setattr(self, name, getattr(event, name))
        self.modalities, self.body_parts = list(event.modalities), list(event.body_parts)
        self.touch()

    def reprioritise(self, priority: PriorityValues, deadline: Deadline, now: datetime) -> None:
        self.priority, self.deadline, self.warn_at = priority, deadline.due_at, deadline.warn_at
        if self.warn_at > now:
            self.warned_at = None
        if self.deadline > now:
            self.breached_at = None
        self.touch(now)

    def assign(self, assignee_id: UUID, now: datetime) -> None:
        self._move_to(StatusValues.ASSIGNED)
        self.assignee_id, self.assigned_at = assignee_id, now
        self.claimed_by = self.claimed_at = self.claim_expires_at = None
        self.touch(now)

    def claim(self, radiologist_id: UUID, now: datetime, ttl: timedelta) -> bool:
        """Claim (or renew a claim) for reading; True when the item was not the claimant's before."""
        if self.claimed_by == radiologist_id and self.status is StatusValues.IN_PROGRESS:
            self.claim_expires_at = now + ttl
            self.touch(now)
            return False
        if self.claimed_by is not None and self.claim_expires_at is not None and self.claim_expires_at > now:
            raise AlreadyClaimed("another radiologist is reading this study")
        if self.assignee_id not in (None, radiologist_id):
            raise NotYours("this study is assigned to another radiologist; a manager can reassign it")
        self._move_to(StatusValues.IN_PROGRESS)
        newly_assigned = self.assignee_id is None
        if newly_assigned:
            self.assignee_id, self.assigned_at = radiologist_id, now
        self.claimed_by, self.claimed_at, self.claim_expires_at = radiologist_id, now, now + ttl
        self.touch(now)
        return newly_assigned

    def release(self, now: datetime) -> None:
        """Back to the queue, for anyone qualified (the assignment rules may hand it out again)."""
        if self.status is not StatusValues.IN_PROGRESS or self.claimed_by is None:
            raise IllegalTransition(self.status, StatusValues.RECEIVED)
        self._move_to(StatusValues.RECEIVED)
        self.assignee_id = self.assigned_at = None
        self.claimed_by = self.claimed_at = self.claim_expires_at = None
        self.touch(now)

    def claim_expired(self, now: datetime) -> bool:
        return (self.status is StatusValues.IN_PROGRESS and self.claim_expires_at is not None
                and self.claim_expires_at <= now)

    def report_drafted(self, author_id: UUID, now: datetime, ttl: timedelta) -> bool:
        """A draft keeps (or makes) its author the reader; ignored once the report went further."""
        if not self.open:
            return False
        if self.status is not StatusValues.IN_PROGRESS:
            self._move_to(StatusValues.IN_PROGRESS)
        if self.assignee_id != author_id:
            self.assignee_id, self.assigned_at = author_id, now
        self.claimed_by, self.claim_expires_at = author_id, now + ttl
        self.claimed_at = self.claimed_at or now
        self.touch(now)
        return True

    def report_submitted(self, author_id: UUID, now: datetime) -> bool:
        if not self.open:
            return False
        self._move_to(StatusValues.PRELIMINARY)
        self.assignee_id = self.assignee_id or author_id
        self.claimed_by = self.claimed_at = self.claim_expires_at = None
        self.preliminary_at = now
        self.touch(now)
        return True

    def report_finalized(self, signed_by: UUID, now: datetime) -> bool:
        if self.status in REPORTED:
            return False
        self._move_to(StatusValues.FINAL)
        self.claimed_by = self.claimed_at = self.claim_expires_at = None
        self.reported_by, self.finalized_at = signed_by, now
        self.assignee_id = self.assignee_id or signed_by
        self.touch(now)
        return True

    def addendum_added(self, now: datetime) -> bool:
        if self.status not in REPORTED:
            return False
        self._move_to(StatusValues.AMENDED)
        self.touch(now)
        return True

    def touch(self, now: datetime | None = None) -> None:
        self.updated_at = now or datetime.now(UTC)

    def _move_to(self, wanted: StatusValues) -> None:
        if wanted not in TRANSITIONS[self.status]:
            raise IllegalTransition(self.status, wanted)
        self.status = wanted
