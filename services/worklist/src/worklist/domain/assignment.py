"""Automatic assignment: the least-loaded radiologist among those qualified and available."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from worklist.domain.model import WorklistItem

#: Modalities a study carries that nobody reads as images (reports, states, key objects, registrations).
NOT_READ = frozenset({"SR", "PR", "KO", "DOC", "REG", "SEG", "RWV", "FID", "PLAN", "AU"})


@dataclass
class Reader:
    """A radiologist who reads for the organisation; empty competences mean every modality or body part."""

    organization_id: UUID
    user_id: UUID
    display_name: str = ""
    modalities: list[str] = field(default_factory=list)
    body_parts: list[str] = field(default_factory=list)
    available: bool = True
    active: bool = True
    max_open: int | None = None
    last_assigned_at: datetime | None = None

    def qualified_for(self, item: WorklistItem) -> bool:
        return (self.active and self.available
                and _covers(self.modalities, [m for m in item.modalities if m.upper() not in NOT_READ])
                and _covers(self.body_parts, item.body_parts))

    def has_room(self, load: int) -> bool:
        return self.max_open is None or load < self.max_open


def _covers(competences: list[str], wanted: list[str]) -> bool:
    if not competences or not wanted:
        return True
    have = {c.upper() for c in competences}
    return all(w.upper() in have for w in wanted)


def choose_reader(item: WorklistItem, readers: Iterable[Reader], load: Mapping[UUID, int]) -> Reader | None:
    """Least open work first; among equals, the one who waited longest for an assignment."""
    candidates = [r for r in readers if r.qualified_for(item) and r.has_room(load.get(r.user_id, 0))]
    if not candidates:
        return None
    return min(candidates, key=lambda r: (load.get(r.user_id, 0),
                                          r.last_assigned_at.timestamp() if r.last_assigned_at else 0.0,
                                          str(r.user_id)))
