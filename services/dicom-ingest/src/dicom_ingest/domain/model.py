from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal
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


#: Indexes one received instance (the batch index writer); answers its outcome (:class:`IndexOutcomeValues`).
Indexer = Callable[[StoreInstance], Awaitable[str]]
#: Removes the file under a storage key if no index row points at it.
Discarder = Callable[[str], Awaitable[None]]


#: What happens to a second copy of a SOP Instance UID the organisation holds (``duplicate_policy``).
DuplicatePolicy = Literal["keep_first", "overwrite"]


class IndexOutcomeValues:
    """What the index did with one received copy; an outcome is a ``str`` equal to one of these.

    A conflict is answered 0xA900 (C-STORE Error "Data Set does not match SOP Class", PS3.4 §B.2.3; the same
    Failure Reason over STOW-RS, PS3.18 §I.2.2): the data set was understood (not Cxxx) and retrying will not
    help (not A7xx "Refused: Out of Resources" nor 0110 "Processing failure", which say the fault is ours), but
    it contradicts the instance held under its UID.
    """

    STORED = "stored"  #: a new instance
    DUPLICATE = "duplicate"  #: held already (keep_first, or overwrite by identical bytes): this copy is discarded
    REPLACED = "replaced"  #: overwrite: this copy replaced the held one, whose file it released
    SUPERSEDED = "superseded"  #: overwrite: a later copy of the same batch replaced this one in the same transaction
    CONFLICT = "conflict"  #: overwrite: held in another study or series; refused, nothing changed


class IndexOutcome(str):
    """One of :class:`IndexOutcomeValues`; a replacement also names the file of the copy it replaced."""

    released_storage_key: str | None

    def __new__(cls, value: str, released_storage_key: str | None = None) -> IndexOutcome:
        outcome = super().__new__(cls, value)
        outcome.released_storage_key = released_storage_key
        return outcome


def unreferenced_storage_key(outcome: str, storage_key: str) -> str | None:
    """The file that ``outcome`` left without an index row, to discard once it is committed: the received copy's
    (``storage_key``) when it is not kept, the replaced copy's when it was replaced, else none."""
    if outcome == IndexOutcomeValues.REPLACED:
        return getattr(outcome, "released_storage_key", None)
    if outcome in (IndexOutcomeValues.DUPLICATE, IndexOutcomeValues.SUPERSEDED, IndexOutcomeValues.CONFLICT):
        return storage_key
    return None


def priority_of(attributes: InstanceAttributes) -> PriorityValues:
    return _PRIORITIES.get(attributes.requested_procedure_priority.upper(), PriorityValues.ROUTINE)


def add_unique(values: list[str], value: str) -> list[str]:
    return values if not value or value in values else [*values, value]
