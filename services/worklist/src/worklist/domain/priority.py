"""An organisation's priority rules: raise a study's priority by what it is, never lower it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from radcommon.contracts import PriorityValues
from worklist.domain.model import PRIORITY_RANK


@dataclass(frozen=True)
class PriorityRule:
    """Matches when every condition given matches; an empty condition matches anything."""

    priority: PriorityValues
    modality: str = ""
    body_part: str = ""
    description_contains: str = ""
    calling_ae_title: str = ""

    def __post_init__(self) -> None:
        if not (self.modality or self.body_part or self.description_contains or self.calling_ae_title):
            raise ValueError("a rule needs at least one condition")

    def matches(self, modalities: Iterable[str], body_parts: Iterable[str], description: str,
                calling_ae_title: str) -> bool:
        return ((not self.modality or self.modality.upper() in {m.upper() for m in modalities})
                and (not self.body_part or self.body_part.upper() in {b.upper() for b in body_parts})
                and (not self.description_contains or self.description_contains.lower() in description.lower())
                and (not self.calling_ae_title or self.calling_ae_title.strip() == calling_ae_title.strip()))


def priority_for(requested: PriorityValues, rules: Iterable[PriorityRule], modalities: list[str],
                 body_parts: list[str], description: str, calling_ae_title: str) -> PriorityValues:
    """The most urgent of what the request asked for and what the matching rules say."""
    candidates = [requested] + [r.priority for r in rules
                                if r.matches(modalities, body_parts, description, calling_ae_title)]
    return min(candidates, key=PRIORITY_RANK.__getitem__)
