"""Events published by worklist."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime, Field

from radcommon.contracts.dicom_ingest import UID, PriorityValues
from radcommon.contracts.envelope import Event


class WorklistStatusValues(StrEnum):
    """Where a study stands on the way to its final report."""

    RECEIVED = "received"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    PRELIMINARY = "preliminary"
    FINAL = "final"
    AMENDED = "amended"


class AssignmentReasonValues(StrEnum):
    RULES = "rules"  # the assignment rules chose the least-loaded qualified radiologist
    MANUAL = "manual"  # a manager assigned or reassigned it
    CLAIM = "claim"  # a radiologist claimed an unassigned item


class StudyAssignedV1(Event):
    """A study was given to a radiologist to read (by the rules, a manager, or their own claim)."""

    routing_key: ClassVar[str] = "worklist.study.assigned.v1"
    aggregate: ClassVar[str] = "item_id"

    item_id: UUID
    study_instance_uid: str = UID
    accession_number: str = Field(default="", max_length=16)
    assignee_id: UUID
    previous_assignee_id: UUID | None = None
    assigned_by: UUID | None = None
    reason: AssignmentReasonValues
    priority: PriorityValues
    deadline: AwareDatetime


class SlaWarningV1(Event):
    """A study's reading deadline is near: the configured share of its time has gone."""

    routing_key: ClassVar[str] = "worklist.sla.warning.v1"
    aggregate: ClassVar[str] = "item_id"

    item_id: UUID
    study_instance_uid: str = UID
    accession_number: str = Field(default="", max_length=16)
    priority: PriorityValues
    status: WorklistStatusValues
    assignee_id: UUID | None = None
    received_at: datetime
    deadline: AwareDatetime


class SlaBreachedV1(SlaWarningV1):
    """A study's reading deadline passed before its report was final."""

    routing_key: ClassVar[str] = "worklist.sla.breached.v1"


class WorklistItemChangedV1(Event):
    """An item appeared or changed; ``sequence`` orders the organisation's changes without gaps.

    The live feed pushes these to users; a client that saw sequence *n* resumes after *n*.
    ``item`` is the item as the worklist API shows it.
    """

    routing_key: ClassVar[str] = "worklist.item.changed.v1"
    aggregate: ClassVar[str] = "organization_id"

    sequence: int = Field(ge=1)
    item_id: UUID
    change: str = Field(max_length=32)
    item: dict[str, object]
