"""Report templates: the sections a report of a kind of study is written in, versioned.

An edit makes a new version; a report remembers the version it was started from and is checked
against that version's sections for as long as it is written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

SECTION_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_SECTIONS = 50
MAX_OPTIONS = 100
MAX_TEXT = 20_000
#: JSON numbers beyond this lose precision in other languages, and RFC 8785 refuses them.
MAX_NUMBER = 2**53

Value = str | int | float | None


class TemplateError(ValueError):
    """A template that cannot be: no sections, duplicate keys, a default that is not an option..."""


class ContentInvalid(ValueError):
    """Report content that its template does not allow."""


class SectionKindValues(StrEnum):
    TEXT = "text"
    CHOICE = "choice"  # one of the section's options (a pick-list)
    NUMBER = "number"


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    kind: SectionKindValues = SectionKindValues.TEXT
    options: tuple[str, ...] = ()
    default: Value = None
    required: bool = False

    def __post_init__(self) -> None:
        if not SECTION_KEY.match(self.key):
            raise TemplateError(f"section key {self.key!r}: lower-case letters, digits and _, starting with a letter")
        if not self.title.strip() or len(self.title) > 200:
            raise TemplateError(f"section {self.key}: a title of 1 to 200 characters")
        if self.kind is SectionKindValues.CHOICE:
            if not self.options or len(self.options) > MAX_OPTIONS:
                raise TemplateError(f"section {self.key}: a choice needs 1 to {MAX_OPTIONS} options")
            if len(set(self.options)) != len(self.options) or any(not o.strip() or len(o) > 200 for o in self.options):
                raise TemplateError(f"section {self.key}: options are distinct, 1 to 200 characters each")
        elif self.options:
            raise TemplateError(f"section {self.key}: only a choice has options")
        try:
            self.check(self.default)
        except ContentInvalid as error:
            raise TemplateError(f"default of {error}") from None

    def check(self, value: object) -> None:
        """Raise :class:`ContentInvalid` unless ``value`` fits this section (``None`` is "not filled in")."""
        if value is None:
            return
        if self.kind is SectionKindValues.TEXT:
            if not isinstance(value, str) or len(value) > MAX_TEXT:
                raise ContentInvalid(f"section {self.key}: text of at most {MAX_TEXT} characters")
        elif self.kind is SectionKindValues.CHOICE:
            if value not in self.options:
                raise ContentInvalid(f"section {self.key}: one of {', '.join(self.options)}")
        elif (isinstance(value, bool) or not isinstance(value, int | float)
              or not math.isfinite(value) or abs(value) > MAX_NUMBER):
            raise ContentInvalid(f"section {self.key}: a finite number")

    def filled(self, value: object) -> bool:
        return value is not None and not (isinstance(value, str) and not value.strip())


@dataclass
class Template:
    """One version of a template; ``version`` grows with every edit."""

    organization_id: UUID
    name: str
    modality: str
    body_part: str
    sections: tuple[Section, ...]
    id: UUID = field(default_factory=uuid4)
    version: int = 1
    active: bool = True
    created_by: UUID | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        check_definition(self.name, self.modality, self.body_part, self.sections)

    def revise(self, name: str, modality: str, body_part: str, sections: Sequence[Section], edited_by: UUID,
               now: datetime) -> None:
        check_definition(name, modality, body_part, sections)
        self.name, self.modality, self.body_part, self.sections = name, modality, body_part, tuple(sections)
        self.version += 1
        self.created_by, self.created_at, self.updated_at = edited_by, now, now

    def default_content(self) -> dict[str, Any]:
        return {"sections": {s.key: s.default for s in self.sections}, "annotations": []}


def check_definition(name: str, modality: str, body_part: str, sections: Sequence[Section]) -> None:
    if not name.strip() or len(name) > 200:
        raise TemplateError("a name of 1 to 200 characters")
    if len(modality) > 16 or len(body_part) > 64:
        raise TemplateError("a modality of at most 16 and a body part of at most 64 characters")
    if not 1 <= len(sections) <= MAX_SECTIONS:
        raise TemplateError(f"1 to {MAX_SECTIONS} sections")
    keys = [s.key for s in sections]
    if len(set(keys)) != len(keys):
        raise TemplateError("section keys are distinct")


def normalized_content(template: Template, content: Mapping[str, Any]) -> dict[str, Any]:
    """``content`` checked against the template, with every section present (``None`` when left out).

    Unknown sections, values of the wrong kind and malformed annotations raise :class:`ContentInvalid`;
    required sections are checked only when the report is submitted (:func:`missing_sections`).
    """
    if set(content) - {"sections", "annotations"}:
        raise ContentInvalid("content holds sections and annotations only")
    given = content.get("sections") or {}
    if not isinstance(given, Mapping):
        raise ContentInvalid("sections map a section key to its value")
    if unknown := sorted(set(given) - {s.key for s in template.sections}):
        raise ContentInvalid(f"the template has no section {', '.join(map(str, unknown))}")
    sections = {}
    for section in template.sections:
        value = given.get(section.key)
        section.check(value)
        sections[section.key] = value
    annotations = content.get("annotations") or []
    if not isinstance(annotations, list):
        raise ContentInvalid("annotations are a list")
    return {"sections": sections, "annotations": [check_annotation(a) for a in annotations]}


def missing_sections(template: Template, content: Mapping[str, Any]) -> list[str]:
    values = content.get("sections", {})
    return [s.key for s in template.sections if s.required and not s.filled(values.get(s.key))]


class AnnotationKindValues(StrEnum):
    """The shape of a mark on an image; the number of points follows the DICOM Graphic Type (0070,0023),
    PS3.3 C.10.5.1.2: POINT one, POLYLINE two for a line and three or more (closed) for a polygon,
    ELLIPSE four (the ends of the major axis, then of the minor axis)."""

    POINT = "point"
    LINE = "line"
    POLYGON = "polygon"
    ELLIPSE = "ellipse"


POINTS = {AnnotationKindValues.POINT: (1, 1), AnnotationKindValues.LINE: (2, 2),
          AnnotationKindValues.POLYGON: (3, 1000), AnnotationKindValues.ELLIPSE: (4, 4)}
ANNOTATION_KEYS = {"sop_instance_uid", "frame_number", "coordinates", "kind", "label"}


def check_annotation(annotation: object) -> dict[str, Any]:
    """An annotation in its stored form, or :class:`ContentInvalid`.

    ``coordinates`` are image (column, row) pairs, as PS3.3 C.10.5.1.2 gives Graphic Data in PIXEL
    units; ``frame_number`` counts from 1 in a multi-frame instance (PS3.3 C.7.6.6).
    """
    if not isinstance(annotation, Mapping) or set(annotation) - ANNOTATION_KEYS:
        raise ContentInvalid(f"an annotation has {', '.join(sorted(ANNOTATION_KEYS))}")
    try:
        kind = AnnotationKindValues(str(annotation.get("kind")))
    except ValueError:
        raise ContentInvalid(f"an annotation is one of {', '.join(AnnotationKindValues)}") from None
    uid, frame, label = annotation.get("sop_instance_uid"), annotation.get("frame_number"), annotation.get("label", "")
    if not isinstance(uid, str) or not re.fullmatch(r"[0-9]+(\.[0-9]+)*", uid) or len(uid) > 64:
        raise ContentInvalid("an annotation names its image by SOP Instance UID")
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, int) or frame < 1):
        raise ContentInvalid("frame numbers start at 1")
    if not isinstance(label, str) or len(label) > 200:
        raise ContentInvalid("an annotation's label has at most 200 characters")
    points = annotation.get("coordinates")
    low, high = POINTS[kind]
    if not isinstance(points, list) or not low <= len(points) <= high:
        raise ContentInvalid(f"a {kind.value} has {low if low == high else f'{low} or more'} points")
    for point in points:
        if (not isinstance(point, list | tuple) or len(point) != 2
                or any(isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c)
                       or abs(c) > MAX_NUMBER for c in point)):
            raise ContentInvalid("a point is two finite numbers [x, y]")
    return {"sop_instance_uid": uid, "frame_number": frame, "coordinates": [list(p) for p in points],
            "kind": kind.value, "label": label}
