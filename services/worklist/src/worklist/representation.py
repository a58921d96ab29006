"""An item as the API, the change feed and the live push show it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from worklist.domain.model import REPORTED, WorklistItem


def sla_state(item: WorklistItem, now: datetime) -> str:
    if item.status in REPORTED and item.finalized_at is not None:
        return "met" if item.finalized_at <= item.deadline else "missed"
    if item.breached_at is not None or item.deadline <= now:
        return "breached"
    if item.warned_at is not None or item.warn_at <= now:
        return "warning"
    return "on_time"


def item_document(item: WorklistItem, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)

    def moment(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    def uuid(value: object) -> str | None:
        return None if value is None else str(value)

    return {
        "id": str(item.id), "organization_id": str(item.organization_id),
        "study_instance_uid": item.study_instance_uid, "patient_id": item.patient_id,
        "patient_name": item.patient_name, "accession_number": item.accession_number,
        "study_date": None if item.study_date is None else item.study_date.isoformat(),
        "study_description": item.study_description, "referring_physician_name": item.referring_physician_name,
        "modalities": list(item.modalities), "body_parts": list(item.body_parts),
        "priority": item.priority.value, "status": item.status.value,
        "number_of_series": item.number_of_series, "number_of_instances": item.number_of_instances,
        "received_at": moment(item.received_at), "deadline": moment(item.deadline), "warn_at": moment(item.warn_at),
        "sla_state": sla_state(item, now), "warned_at": moment(item.warned_at),
        "breached_at": moment(item.breached_at), "assignee_id": uuid(item.assignee_id),
        "assigned_at": moment(item.assigned_at), "claimed_by": uuid(item.claimed_by),
        "claimed_at": moment(item.claimed_at), "claim_expires_at": moment(item.claim_expires_at),
        "preliminary_at": moment(item.preliminary_at), "finalized_at": moment(item.finalized_at),
        "reported_by": uuid(item.reported_by), "updated_at": moment(item.updated_at),
    }
