"""Service-level agreements: how long a study of a priority and modality may wait for its final report."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from radcommon.contracts import PriorityValues
from worklist.domain.model import Deadline

ANY_MODALITY = "*"


@dataclass(frozen=True)
class SlaPolicy:
    """``minutes`` to the deadline; the warning goes when ``warning_fraction`` of that time has passed."""

    priority: PriorityValues
    modality: str
    minutes: float
    warning_fraction: float = 0.75

    def __post_init__(self) -> None:
        if not 0 < self.minutes <= 60 * 24 * 365:
            raise ValueError("minutes must be more than 0 and at most a year")
        if not 0 < self.warning_fraction < 1:
            raise ValueError("warning_fraction must be between 0 and 1")
        if self.modality != ANY_MODALITY and not (self.modality.isalnum() and self.modality.isupper()
                                                 and len(self.modality) <= 16):
            raise ValueError("modality must be a DICOM modality code (CT, MR, ...) or *")


def default_policies(minutes: Mapping[PriorityValues, float], warning_fraction: float) -> list[SlaPolicy]:
    return [SlaPolicy(priority, ANY_MODALITY, minutes[priority], warning_fraction) for priority in PriorityValues]


def policy_for(policies: Iterable[SlaPolicy], priority: PriorityValues, modalities: Iterable[str],
               fallback: Iterable[SlaPolicy]) -> SlaPolicy:
    """The strictest policy naming one of the study's modalities, else the priority's catch-all."""
    of_priority = [p for p in policies if p.priority is priority]
    wanted = set(modalities)
    specific = [p for p in of_priority if p.modality in wanted]
    if specific:
        return min(specific, key=lambda p: p.minutes)
    catch_all = [p for p in of_priority if p.modality == ANY_MODALITY]
    if catch_all:
        return catch_all[0]
    return next(p for p in fallback if p.priority is priority)


def deadline_for(policy: SlaPolicy, received_at: datetime) -> Deadline:
    allowed = timedelta(minutes=policy.minutes)
    return Deadline(due_at=received_at + allowed, warn_at=received_at + allowed * policy.warning_fraction)
