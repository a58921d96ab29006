from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from dicom_ingest.dicom.attributes import InstanceAttributes
from radcommon.contracts import PriorityValues

#: (0040,1003) Requested Procedure Priority defined terms (PS3.3 C.4.11) to reading priority.
_PRIORITIES = {"STAT": PriorityValues.STAT, "HIGH": PriorityValues.URGENT,
               "ROUTINE": PriorityValues.ROUTINE, "MEDIUM": PriorityValues.ROUTINE, "LOW": PriorityValues.ROUTINE}


@dataclass(frozen=True)
class StoreInstance:
    """Index one received instance whose file is already stored under ``storage_key``."""

    organization_id: UUID
    attributes: InstanceAttributes
    transfer_syntax_uid: str
    storage_key: str
    size_bytes: int
    calling_ae_title: str


class IndexOutcomeValues:
    STORED = "stored"
    DUPLICATE = "duplicate"


def priority_of(attributes: InstanceAttributes) -> PriorityValues:
    return _PRIORITIES.get(attributes.requested_procedure_priority.upper(), PriorityValues.ROUTINE)


def add_unique(values: list[str], value: str) -> list[str]:
    return values if not value or value in values else [*values, value]
