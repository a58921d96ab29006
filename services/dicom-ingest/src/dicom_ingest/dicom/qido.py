"""QIDO-RS (PS3.18 §10.6): what a search request asks of the study index, and the DICOM JSON it answers.

A search names a resource (PS3.18 Table 10.6.1-2: all studies, a study's series, all series, a
series' instances, a study's instances, all instances) and query parameters (§8.3.4): attribute
matches by keyword or tag, ``includefield``, ``fuzzymatching``, ``limit`` and ``offset``.
:func:`parse_search` turns them into a :class:`~dicom_ingest.dicom.query.Query` of the same
matching rules as C-FIND (see ``query.py``), and :func:`search_results` turns the index's rows into
the response payload (PS3.18 §10.6.3.3, the DICOM JSON Model of Annex F).

What this origin server does with what it cannot do:

- A parameter that is neither a search parameter nor a DICOM attribute (keyword of PS3.6 Table 6-1,
  or a tag as eight hexadecimal digits), or a value it cannot read, is refused (400).
- A DICOM attribute the index cannot match (another attribute, a sequence path, one below the
  resource's level, or a count) is left out of the matching and named in a Warning (``299``), so
  the client knows the results were not narrowed by it. Asked for by ``includefield``, it is simply
  not returned (§10.6.3.3: only the attributes "supported by the origin server"; those below the
  level "shall not be returned").
- ``fuzzymatching=true``, ``emptyvaluematching=true`` and ``multiplevaluematching=true`` are not
  supported: literal matching is done and the Warning of §8.3.4.2, §8.3.4.5 or §8.3.4.6 is given.
- At most :data:`MAX_RESULTS` results go in one response; when more match than that (and no
  smaller ``limit`` was asked), the response says so in a Warning, and ``offset`` fetches the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydicom.datadict import tag_for_keyword

from dicom_ingest.dicom.attributes import UID_PATTERN
from dicom_ingest.dicom.query import (
    ATTRIBUTES,
    InvalidQuery,
    Query,
    QueryAttribute,
    build_query,
)
from dicom_ingest.dicom.query import QueryRetrieveLevelValues as Level

#: Most results one response carries (§8.3.4.4: "the maximum number of results supported by the origin server").
MAX_RESULTS = 10_000
MAX_OFFSET = 2**31 - 1
ONLINE = "ONLINE"
UTF_8 = "ISO_IR 192"
FUZZY_MATCHING_WARNING = "The fuzzymatching parameter is not supported. Only literal matching has been performed."
TRUNCATED_WARNING = ("The number of results exceeded the maximum supported by the server. Additional results can "
                     "be requested.")
_NOT_PERFORMED = {"emptyvaluematching": "Empty Value Matching", "multiplevaluematching": "Multiple Value Matching"}
#: Parameters of the request that are not attribute matches (§8.3.4; ``accept`` and ``charset``: §8.3.3.1).
SEARCH_PARAMETERS = frozenset({"includefield", "fuzzymatching", "limit", "offset", *_NOT_PERFORMED, "accept",
                               "charset"})
_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_SPECIFIC_CHARACTER_SET, _INSTANCE_AVAILABILITY, _RETRIEVE_URL = 0x00080005, 0x00080056, 0x00081190
#: What the index holds of an entity, by tag (not what the SCP answers itself: Retrieve AE Title, Availability).
_INDEXED = {a.tag: a for a in ATTRIBUTES.values() if a.level is not None}

#: Each level's attributes a search answers with unless asked for more: PS3.18 Tables 10.6.3-3, -4 and -5,
#: plus the Study and Series Description, which viewers show in their lists. Specific Character Set,
#: Instance Availability and Retrieve URL are answered by :func:`search_results` itself.
DEFAULT_KEYWORDS: Mapping[Level, tuple[str, ...]] = {
    Level.STUDY: ("StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "ReferringPhysicianName",
                  "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID",
                  "StudyDescription", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"),
    Level.SERIES: ("Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber",
                   "NumberOfSeriesRelatedInstances"),
    Level.IMAGE: ("SOPClassUID", "SOPInstanceUID", "InstanceNumber", "NumberOfFrames"),
}
#: Returned only when they have a value (Type C in Table 10.6.3-5), unless asked for by name.
_CONDITIONAL = frozenset({"NumberOfFrames"})
_PERSON_NAME_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


@dataclass(frozen=True)
class Resource:
    """A QIDO-RS target resource: the level searched and the UIDs its path fixes (Study, then Series)."""

    name: str
    level: Level
    path_keys: tuple[str, ...] = ()

    @property
    def default_keywords(self) -> tuple[str, ...]:
        """Table 10.6.3-3/4/5 for the level, and for the levels above it that the path does not fix
        (§10.6.3.3.2 and §10.6.3.3.3: all series carry their study's attributes, and so on)."""
        first = Level.STUDY.depth + len(self.path_keys)
        return tuple(k for level in (Level.STUDY, Level.SERIES, Level.IMAGE)
                     if first <= level.depth <= self.level.depth for k in DEFAULT_KEYWORDS[level])


ALL_STUDIES = Resource("all studies", Level.STUDY)
STUDY_SERIES = Resource("a study's series", Level.SERIES, ("StudyInstanceUID",))
ALL_SERIES = Resource("all series", Level.SERIES)
SERIES_INSTANCES = Resource("a series' instances", Level.IMAGE, ("StudyInstanceUID", "SeriesInstanceUID"))
STUDY_INSTANCES = Resource("a study's instances", Level.IMAGE, ("StudyInstanceUID",))
ALL_INSTANCES = Resource("all instances", Level.IMAGE)


@dataclass(frozen=True)
class Search:
    """A search understood: the index query, what each result carries, and what to warn about.

    ``probing`` means the query asks for one row more than may be answered, to learn whether the
    results are cut off at :data:`MAX_RESULTS`.
    """

    resource: Resource
    query: Query
    keywords: tuple[str, ...]
    explicit: frozenset[str]
    warnings: tuple[str, ...]
    answer_limit: int
    probing: bool

    def page(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
        """The rows to answer and the warnings to give, the truncation one included when it applies."""
        if self.probing and len(rows) > self.answer_limit:
            return rows[:self.answer_limit], (*self.warnings, TRUNCATED_WARNING)
        return rows, self.warnings


def parse_search(resource: Resource, path_uids: Mapping[str, str], parameters: Iterable[tuple[str, str]]) -> Search:
    """Understand a search request's path UIDs and query parameters (PS3.18 §8.3.4, §10.6.1).

    Raises
    ------
    InvalidQuery
        For an unknown parameter, a repeated one, a value that cannot be read (a UID, date, time,
        integer, ``limit``, ``offset``, ``true``/``false``), or a match on an attribute the path
        already fixes.
    """
    keys: dict[str, str] = {}
    for keyword in resource.path_keys:
        value = path_uids[keyword]
        if len(value) > 64 or not UID_PATTERN.fullmatch(value):
            raise InvalidQuery(f"{value[:80]!r} in the path is not a {keyword}", ATTRIBUTES[keyword].tag)
        keys[keyword] = value
    includes: list[str] = []
    options: dict[str, str] = {}
    matched: dict[str, str] = {}
    unsupported: list[str] = []
    returned: list[str] = []
    for name, value in parameters:
        if name == "includefield":
            includes += [part.strip() for part in value.split(",") if part.strip()]
            continue
        if name in SEARCH_PARAMETERS:
            if name in options:
                raise InvalidQuery(f"the {name} parameter is given more than once")
            options[name] = value
            continue
        attr = _attribute(name)
        key = attr.keyword if attr is not None else name
        if key in matched:
            raise InvalidQuery(f"{name} is matched more than once")
        matched[key] = value
        if key in resource.path_keys:
            raise InvalidQuery(f"{key} is given by the path of {resource.name}", attr.tag if attr else None)
        if attr is None or not _at_or_above(attr, resource.level):
            if value.strip(" ") not in ("", "*"):
                unsupported.append(name)
        elif not attr.matchable:
            returned.append(key)
            if value.strip(" ") not in ("", "*"):
                unsupported.append(name)
        elif value.strip(" ") in ("", "*"):
            returned.append(key)  # universal matching: the attribute is asked for back
        else:
            keys[key] = value
    for item in includes:
        if item == "all":
            returned.append("all")
        elif (attr := _attribute(item)) is not None and _at_or_above(attr, resource.level):
            returned.append(attr.keyword)
    limit, offset = _count(options, "limit"), _count(options, "offset")
    answer_limit = MAX_RESULTS if limit is None else min(limit, MAX_RESULTS)
    probing = limit is None or limit > MAX_RESULTS
    query = build_query(resource.level, keys, return_keys=[*resource.default_keywords, *returned],
                        limit=answer_limit + 1 if probing else answer_limit, offset=offset or 0,
                        fuzzy_matching=_flag(options, "fuzzymatching"))
    warnings = []
    if unsupported:
        warnings.append(f"The following attributes are not supported for matching and were ignored: "
                        f"{', '.join(unsupported)}")
    if query.fuzzy_matching:
        warnings.append(FUZZY_MATCHING_WARNING)
    for name, matching in _NOT_PERFORMED.items():
        if _flag(options, name):
            warnings.append(f"The {name} parameter is not supported. {matching} has not been performed.")
    explicit = frozenset(k for k in returned if k != "all") | (
        frozenset(a.keyword for a in ATTRIBUTES.values()) if "all" in returned else frozenset())
    keywords = tuple(k for k in query.return_keys if ATTRIBUTES[k].level is not None)
    return Search(resource, query, keywords, explicit, tuple(warnings), answer_limit, probing)


def _attribute(name: str) -> QueryAttribute | None:
    """The index's attribute a keyword, tag or sequence path names; None for another DICOM attribute.

    Raises
    ------
    InvalidQuery
        When it names no DICOM attribute at all.
    """
    parts = name.split(".")
    for part in parts:
        if not (_TAG.fullmatch(part) or tag_for_keyword(part) is not None):
            raise InvalidQuery(f"{name[:80]!r} is neither a search parameter nor a DICOM attribute "
                               "(a keyword, or a tag as 8 hexadecimal digits)")
    if len(parts) > 1:
        return None  # a sequence path: Sequence Matching is not supported
    return _INDEXED.get(int(name, 16) if _TAG.fullmatch(name) else int(tag_for_keyword(name) or 0))


def _at_or_above(attr: QueryAttribute, level: Level) -> bool:
    return attr.level is not None and attr.level.depth <= level.depth


def _count(options: Mapping[str, str], name: str) -> int | None:
    text = options.get(name)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 12 or int(text) > MAX_OFFSET:
        raise InvalidQuery(f"{name} must be a whole number from 0 to {MAX_OFFSET}, not {text[:40]!r}")
    return int(text)


def _flag(options: Mapping[str, str], name: str) -> bool:
    text = options.get(name, "false")
    if text not in ("true", "false"):
        raise InvalidQuery(f"{name} must be true or false, not {text[:40]!r}")
    return text == "true"


# -- the response payload -------------------------------------------------------------------------------

def search_results(search: Search, rows: Sequence[Mapping[str, Any]], base_url: str) -> list[dict[str, Any]]:
    """One DICOM JSON object (PS3.18 Annex F) per row, its attributes in tag order.

    Each carries the level's attributes (empty when unknown), Specific Character Set (the payload is
    UTF-8), Instance Availability (everything is ONLINE) and the Retrieve URL of the entity under
    ``base_url`` (the public ``…/dicomweb``).
    """
    level = search.resource.level
    fixed = {f"{_SPECIFIC_CHARACTER_SET:08X}": {"vr": "CS", "Value": [UTF_8]},
             f"{_INSTANCE_AVAILABILITY:08X}": {"vr": "CS", "Value": [ONLINE]}}
    url_key = f"{_RETRIEVE_URL:08X}"
    # what every result holds, in tag order, worked out once: (key, VR, keyword, left out when empty)
    plan = sorted([(f"{ATTRIBUTES[k].tag:08X}", ATTRIBUTES[k].vr, k, k in _CONDITIONAL and k not in search.explicit)
                   for k in search.keywords] + [(key, "", "", False) for key in (*fixed, url_key)])
    results = []
    for row in rows:
        document: dict[str, Any] = {}
        for key, vr, keyword, skip_empty in plan:
            if key in fixed:
                document[key] = fixed[key]
            elif key == url_key:
                document[key] = {"vr": "UR", "Value": [retrieve_url(level, row, base_url)]}
            else:
                element = json_element(vr, row.get(keyword))
                if not skip_empty or "Value" in element:
                    document[key] = element
        results.append(document)
    return results


def retrieve_url(level: Level, row: Mapping[str, Any], base_url: str) -> str:
    """The WADO-RS URL of the study, series or instance a result stands for (PS3.18 §10.6.3.3)."""
    url = f"{base_url}/studies/{row['StudyInstanceUID']}"
    if level is not Level.STUDY:
        url += f"/series/{row['SeriesInstanceUID']}"
        if level is Level.IMAGE:
            url += f"/instances/{row['SOPInstanceUID']}"
    return url


def json_element(vr: str, value: Any) -> dict[str, Any]:
    """One attribute in the DICOM JSON Model (PS3.18 §F.2.2, §F.2.3): an empty one has no Value;
    a Person Name is an object of component groups (§F.2.2), IS a number, DA ``YYYYMMDD``."""
    if value is None or value == "":
        return {"vr": vr}
    if isinstance(value, str):
        if vr == "PN":
            groups = {name: group for name, group in zip(_PERSON_NAME_GROUPS, value.split("="), strict=False) if group}
            return {"vr": vr, "Value": [groups]} if groups else {"vr": vr}
        return {"vr": vr, "Value": [int(value) if vr == "IS" else value]}
    if isinstance(value, int):
        return {"vr": vr, "Value": [value]}
    if isinstance(value, date):
        return {"vr": vr, "Value": [value.strftime("%Y%m%d")]}
    if isinstance(value, list | tuple):
        values = [v for v in value if v is not None and v != ""]
        return {"vr": vr, "Value": [int(v) if vr == "IS" else str(v) for v in values]} if values else {"vr": vr}
    return {"vr": vr, "Value": [str(value)]}
