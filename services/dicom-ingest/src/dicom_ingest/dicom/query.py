"""Query/Retrieve matching: what a C-FIND, C-MOVE or C-GET identifier asks of the study index.

One :class:`Query` says which entities (a Query/Retrieve Level, PS3.4 §C.3.1) whose attributes
match which terms (PS3.4 §C.2.2.2), and which attributes to return. The DIMSE service class builds it
from a request identifier (:func:`find_request`, :func:`retrieve_query`); QIDO-RS builds the same
object from its search parameters (:func:`build_query`: ``StudyDate=20240101-``,
``PatientName=DOE*``, ``includefield``, ``limit``/``offset``, ``fuzzymatching``), and the index
answers both through ``adapters/index_queries.py``.

Matching, as this SCP conforms to it:

- **Universal** (PS3.4 §C.2.2.2.3): an empty value, or ``*`` alone (for any VR), matches everything
  and asks for the attribute back.
- **Single value** (§C.2.2.2.1): exact and case-sensitive, except Person Name (PN), which is matched
  case-insensitively (allowed by §C.2.2.2.1.1; ASCII letters only on SQLite). No fuzzy matching.
- **Wild card** (§C.2.2.2.4): ``*`` and ``?`` in values of VR AE, CS, LO, LT, PN, SH, ST, UC, UR, UT.
- **List of UID** (§C.2.2.2.2): backslash-separated UIDs, any of which may match. Several values of
  another VR (``CT\\MR``) likewise match when any one does.
- **Range** (§C.2.2.2.5): ``<date1>-<date2>``, ``-<date1>``, ``<date1>-`` for DA; the same for TM.
  Dates and times are matched by meaning (§C.2.2.2.1.3): ``2230`` is ``223000``, a fraction of a
  second is ignored, and a time of reduced precision is completed with zeros. Without the extended
  negotiation of combined date-time matching, Study Date and Study Time are matched independently.
- Values of multi-valued attributes (Modalities in Study, SOP Classes in Study) match when any one
  of them does (§C.2.2.3).

Searches are hierarchical (§C.4.1.3.1.1): an identifier must hold a single value of the Unique Key
of every level above the Query/Retrieve Level, or it does not match the SOP Class (0xA900). Other
keys above the level are matched too rather than refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from enum import IntEnum, StrEnum
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from dicom_ingest.dicom.attributes import UID_PATTERN

#: Most values one key may list (UIDs of a C-MOVE, alternatives of a QIDO parameter).
MAX_VALUES = 4096
#: Longest value one key may hold; the Standard lets keys exceed their VR's length (§C.2.2.2).
MAX_VALUE_LENGTH = 1024
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_TIME = re.compile(r"([01][0-9]|2[0-3])(?:([0-5][0-9])(?:([0-5][0-9]|60)(?:\.[0-9]{1,6})?)?)?")
_DATE = re.compile(r"[0-9]{8}")


class QueryRetrieveLevelValues(StrEnum):
    """(0008,0052) Query/Retrieve Level (PS3.4 §C.4.1.1.3.1)."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"

    @property
    def depth(self) -> int:
        return _DEPTH[self]


_DEPTH = {QueryRetrieveLevelValues.PATIENT: 0, QueryRetrieveLevelValues.STUDY: 1,
          QueryRetrieveLevelValues.SERIES: 2, QueryRetrieveLevelValues.IMAGE: 3}


class InformationModelValues(StrEnum):
    """The Query/Retrieve Information Models served (PS3.4 §C.3.1, §C.3.2)."""

    PATIENT_ROOT = "PATIENT_ROOT"
    STUDY_ROOT = "STUDY_ROOT"

    @property
    def levels(self) -> tuple[QueryRetrieveLevelValues, ...]:
        """Its levels from the top; in the Study Root model patient attributes belong to the study."""
        every = tuple(QueryRetrieveLevelValues)
        return every if self is InformationModelValues.PATIENT_ROOT else every[1:]


class QueryRetrieveStatusValues(IntEnum):
    """C-FIND, C-MOVE and C-GET response statuses (PS3.4 Tables C.4-1, C.4-2 and C.4-3)."""

    SUCCESS = 0x0000
    PENDING = 0xFF00
    PENDING_WITH_UNSUPPORTED_OPTIONAL_KEYS = 0xFF01
    CANCEL = 0xFE00
    SUB_OPERATIONS_COMPLETE_WITH_FAILURES = 0xB000
    OUT_OF_RESOURCES = 0xA700
    UNABLE_TO_CALCULATE_NUMBER_OF_MATCHES = 0xA701
    UNABLE_TO_PERFORM_SUB_OPERATIONS = 0xA702
    MOVE_DESTINATION_UNKNOWN = 0xA801
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    UNABLE_TO_PROCESS = 0xC000


class InvalidQuery(ValueError):
    """The identifier or search parameters ask for something this model cannot match.

    A DIMSE request answers it with 0xA900 (Identifier does not match SOP Class), QIDO-RS with 400.
    ``offending_element`` is the tag to report in (0000,0901), when one is to blame.
    """

    def __init__(self, reason: str, offending_element: int | None = None) -> None:
        super().__init__(reason)
        self.offending_element = offending_element


@dataclass(frozen=True)
class QueryAttribute:
    """A key the index can match and return (PS3.4 §C.6.1.1 and Table C.3-1).

    ``level`` None marks an attribute answered at every level by the SCP itself (Retrieve AE
    Title, Instance Availability); ``matchable`` False one returned but never matched (counts).
    """

    keyword: str
    tag: int
    vr: str
    level: QueryRetrieveLevelValues | None
    matchable: bool = True
    multiple: bool = False


def _attributes() -> dict[str, QueryAttribute]:
    P, S, E, I = (QueryRetrieveLevelValues.PATIENT, QueryRetrieveLevelValues.STUDY,  # noqa: E741
                  QueryRetrieveLevelValues.SERIES, QueryRetrieveLevelValues.IMAGE)
    table: list[tuple[str, str, QueryRetrieveLevelValues | None, bool, bool]] = [
        ("PatientName", "PN", P, True, False), ("PatientID", "LO", P, True, False),
        ("IssuerOfPatientID", "LO", P, True, False), ("PatientBirthDate", "DA", P, True, False),
        ("PatientSex", "CS", P, True, False), ("NumberOfPatientRelatedStudies", "IS", P, False, False),
        ("NumberOfPatientRelatedSeries", "IS", P, False, False),
        ("NumberOfPatientRelatedInstances", "IS", P, False, False),
        ("StudyInstanceUID", "UI", S, True, False), ("StudyDate", "DA", S, True, False),
        ("StudyTime", "TM", S, True, False), ("AccessionNumber", "SH", S, True, False),
        ("StudyID", "SH", S, True, False), ("StudyDescription", "LO", S, True, False),
        ("ReferringPhysicianName", "PN", S, True, False), ("ModalitiesInStudy", "CS", S, True, True),
        ("SOPClassesInStudy", "UI", S, True, True), ("NumberOfStudyRelatedSeries", "IS", S, False, False),
        ("NumberOfStudyRelatedInstances", "IS", S, False, False),
        ("SeriesInstanceUID", "UI", E, True, False), ("Modality", "CS", E, True, False),
        ("SeriesNumber", "IS", E, True, False), ("SeriesDescription", "LO", E, True, False),
        ("BodyPartExamined", "CS", E, True, False), ("NumberOfSeriesRelatedInstances", "IS", E, False, False),
        ("SOPInstanceUID", "UI", I, True, False), ("SOPClassUID", "UI", I, True, False),
        ("InstanceNumber", "IS", I, True, False), ("NumberOfFrames", "IS", I, True, False),
        ("AvailableTransferSyntaxUID", "UI", I, False, False),
        ("RetrieveAETitle", "AE", None, False, True), ("InstanceAvailability", "CS", None, False, False),
    ]
    return {keyword: QueryAttribute(keyword, int(tag_for_keyword(keyword) or 0), vr, level, matchable, multiple)
            for keyword, vr, level, matchable, multiple in table}


#: Every attribute the index knows, by keyword.
ATTRIBUTES: Mapping[str, QueryAttribute] = _attributes()
_BY_TAG = {a.tag: a for a in ATTRIBUTES.values()}
#: The Unique Key of each level (PS3.4 §C.6.1.1.2-§C.6.1.1.5).
UNIQUE_KEYS = {QueryRetrieveLevelValues.PATIENT: ATTRIBUTES["PatientID"],
               QueryRetrieveLevelValues.STUDY: ATTRIBUTES["StudyInstanceUID"],
               QueryRetrieveLevelValues.SERIES: ATTRIBUTES["SeriesInstanceUID"],
               QueryRetrieveLevelValues.IMAGE: ATTRIBUTES["SOPInstanceUID"]}
_QUERY_RETRIEVE_LEVEL, _SPECIFIC_CHARACTER_SET = 0x00080052, 0x00080005


def attribute(name: str) -> QueryAttribute:
    """The attribute a keyword (``PatientName``) or tag (``00100010``) names.

    Raises
    ------
    InvalidQuery
        When it names no attribute the index matches or returns.
    """
    found = ATTRIBUTES.get(name)
    if found is None and re.fullmatch(r"[0-9A-Fa-f]{8}", name):
        found = _BY_TAG.get(int(name, 16))
    if found is None:
        raise InvalidQuery(f"{name} is not an attribute this archive can search or return")
    return found


# -- matching -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Exact:
    """Single value matching (§C.2.2.2.1), or one UID of a list (§C.2.2.2.2)."""

    value: str | int | date


@dataclass(frozen=True)
class Pattern:
    """Wild card matching (§C.2.2.2.4): ``*`` any run of characters, ``?`` any one character."""

    pattern: str

    def regex(self) -> re.Pattern[str]:
        parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in self.pattern)
        return re.compile("".join(parts), re.DOTALL)


@dataclass(frozen=True)
class Range:
    """Range matching (§C.2.2.2.5), both ends inclusive; a missing end is open.

    Dates are :class:`datetime.date`; times are ``HHMMSS`` strings (see :func:`normalized_time`).
    """

    lower: date | str | None
    upper: date | str | None


Term = Exact | Pattern | Range


@dataclass(frozen=True)
class Match:
    """Entities whose ``attribute`` matches any one of ``terms``."""

    attribute: QueryAttribute
    terms: tuple[Term, ...]

    @property
    def case_insensitive(self) -> bool:
        return self.attribute.vr == "PN"

    def matches(self, stored: Any) -> bool:
        """Whether a stored value (a list for a multi-valued attribute) matches: the rule the SQL must follow."""
        values = stored if isinstance(stored, list | tuple) else [stored]
        return any(self._term_matches(term, value) for term in self.terms for value in values)

    def _term_matches(self, term: Term, value: Any) -> bool:
        if value is None or value == "":
            return False
        if self.attribute.vr == "TM":
            value = normalized_time(str(value))
        if isinstance(term, Range):
            return (term.lower is None or term.lower <= value) and (term.upper is None or value <= term.upper)
        if isinstance(term, Pattern):
            text, pattern = (str(value).lower(), Pattern(term.pattern.lower())) if self.case_insensitive \
                else (str(value), term)
            return pattern.regex().fullmatch(text) is not None
        if self.case_insensitive:
            return str(value).lower() == str(term.value).lower()
        return bool(value == term.value)


def normalized_time(value: str) -> str:
    """A TM value as ``HHMMSS``: colons (ACR-NEMA) dropped, missing parts zero, the fraction ignored.

    The index compares ``substr(replace(t, ':', '') || '000000', 1, 6)``; this is the same rule.
    """
    return (value.replace(":", "") + "000000")[:6]


def parse_match(attr: QueryAttribute, values: Sequence[str]) -> Match | None:
    """The match a key's value(s) ask for; None for universal matching.

    Raises
    ------
    InvalidQuery
        When a value is not valid for the attribute's VR (a UID, a date, a time, an integer), a
        range is reversed, or there are too many or too long values.
    """
    texts = [v.strip(" ") for v in values]
    texts = [t for t in texts if t]
    if not texts or "*" in texts:
        return None
    if len(texts) > MAX_VALUES:
        raise InvalidQuery(f"{attr.keyword} lists more than {MAX_VALUES} values", attr.tag)
    if any(len(t) > MAX_VALUE_LENGTH for t in texts):
        raise InvalidQuery(f"{attr.keyword} has a value longer than {MAX_VALUE_LENGTH} characters", attr.tag)
    if not attr.matchable:
        raise InvalidQuery(f"{attr.keyword} is returned but cannot be matched", attr.tag)
    return Match(attr, tuple(_term(attr, text) for text in texts))


def _term(attr: QueryAttribute, text: str) -> Term:
    if attr.vr == "UI":
        if len(text) > 64 or not UID_PATTERN.fullmatch(text):
            raise InvalidQuery(f"{attr.keyword}: {text!r} is not a UID", attr.tag)
        return Exact(text)
    if attr.vr == "DA":
        if "-" in text:
            first, last = (_date(attr, part.strip()) if part.strip() else None for part in text.split("-", 1))
            return _range(attr, first, last)
        return Exact(_date(attr, text))
    if attr.vr == "TM":
        if "-" in text:
            start, end = (_time(attr, part.strip()) if part.strip() else None for part in text.split("-", 1))
            return _range(attr, start, end)
        exact = _time(attr, text)
        return Range(exact, exact)
    if attr.vr == "IS":
        try:
            return Exact(int(text))
        except ValueError:
            raise InvalidQuery(f"{attr.keyword}: {text!r} is not an integer", attr.tag) from None
    if attr.vr in WILDCARD_VRS and ("*" in text or "?" in text):
        return Pattern(text)
    return Exact(text)


def _range(attr: QueryAttribute, lower: Any, upper: Any) -> Range:
    if lower is None and upper is None:
        raise InvalidQuery(f"{attr.keyword}: a range needs at least one end", attr.tag)
    if lower is not None and upper is not None and lower > upper:
        raise InvalidQuery(f"{attr.keyword}: the range ends before it starts", attr.tag)
    return Range(lower, upper)


def _date(attr: QueryAttribute, text: str) -> date:
    compact = text.replace(".", "") if len(text) == 10 else text  # ACR-NEMA's YYYY.MM.DD
    if _DATE.fullmatch(compact):
        try:
            return date(int(compact[:4]), int(compact[4:6]), int(compact[6:]))
        except ValueError:
            pass
    raise InvalidQuery(f"{attr.keyword}: {text!r} is not a date (YYYYMMDD)", attr.tag)


def _time(attr: QueryAttribute, text: str) -> str:
    compact = text.replace(":", "")
    if not _TIME.fullmatch(compact):
        raise InvalidQuery(f"{attr.keyword}: {text!r} is not a time (HHMMSS.FFFFFF)", attr.tag)
    return normalized_time(compact)


# -- the query ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Query:
    """Entities of ``level`` matching every one of ``matches``, with ``return_keys`` (keywords) filled.

    ``limit``/``offset`` page through a stable order. ``fuzzy_matching`` records what QIDO-RS asked;
    this archive matches person names literally (case-insensitively) either way.
    """

    level: QueryRetrieveLevelValues
    matches: tuple[Match, ...] = ()
    return_keys: tuple[str, ...] = ()
    limit: int | None = None
    offset: int = 0
    fuzzy_matching: bool = False

    def __post_init__(self) -> None:
        if (self.limit is not None and self.limit < 0) or self.offset < 0:
            raise ValueError("limit and offset cannot be negative")
        for key in self.return_keys:
            attr = attribute(key)
            if attr.level is not None and attr.level.depth > self.level.depth:
                raise InvalidQuery(f"{key} is a {attr.level.value} attribute, below the {self.level.value} level")

    def page(self, limit: int, offset: int) -> Query:
        return replace(self, limit=limit, offset=offset)


def build_query(level: QueryRetrieveLevelValues | str, keys: Mapping[str, str | Sequence[str] | None] | None = None,
                *, return_keys: Iterable[str] = (), limit: int | None = None, offset: int = 0,
                fuzzy_matching: bool = False) -> Query:
    """A query from keys named by keyword or tag, as QIDO-RS search parameters give them.

    A UI value may list UIDs separated by backslashes or commas (PS3.18 §8.3.4.1); ``return_keys``
    may hold ``all`` for every attribute of the level and above. Unique keys of the level and
    above are always returned.

    Raises
    ------
    InvalidQuery
        For an unknown attribute, an attribute below ``level``, or a value :func:`parse_match` refuses.
    """
    try:
        level = QueryRetrieveLevelValues(level)
    except ValueError:
        raise InvalidQuery(f"{level!r} is not a query level") from None
    matches = []
    for name, value in (keys or {}).items():
        attr = attribute(name)
        if attr.level is None or attr.level.depth > level.depth:
            raise InvalidQuery(f"{attr.keyword} cannot be matched at the {level.value} level", attr.tag)
        values = [value] if isinstance(value, str) else list(value or [])
        split = [part for v in values for part in re.split(r"[\\,]" if attr.vr == "UI" else r"\\", v)]
        match = parse_match(attr, split)
        if match is not None:
            matches.append(match)
    wanted = list(return_keys)
    if "all" in wanted:
        wanted = [a.keyword for a in ATTRIBUTES.values() if a.level is not None and a.level.depth <= level.depth]
    keywords = _unique([*(UNIQUE_KEYS[lv].keyword for lv in QueryRetrieveLevelValues if lv.depth <= level.depth),
                        *(attribute(k).keyword for k in wanted), *(m.attribute.keyword for m in matches)])
    return Query(level, tuple(matches), tuple(keywords), limit, offset, fuzzy_matching)


# -- DIMSE identifiers ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FindRequest:
    """A C-FIND identifier understood: the query, and how to shape each response identifier.

    ``requested`` holds every key of the request, in order, as (tag, VR) — known or not, since
    unknown keys are answered empty. ``unsupported_keys`` is set when a non-empty key could not be
    matched: responses are then Pending with 0xFF01 (PS3.4 Table C.4-1).
    """

    model: InformationModelValues
    query: Query
    requested: tuple[tuple[int, str], ...] = field(default=())
    unsupported_keys: bool = False


def find_request(identifier: Dataset, model: InformationModelValues) -> FindRequest:
    """Understand a C-FIND request identifier (PS3.4 §C.4.1.1.3.1) under the hierarchical search.

    Raises
    ------
    InvalidQuery
        When the Query/Retrieve Level is missing or not a level of ``model``, or a Unique Key of a
        level above it is missing or not a single value (§C.4.1.2.1), or a value is invalid.
    """
    level = _level(identifier, model)
    keys = _keys(identifier)
    matches: list[Match] = []
    requested: list[tuple[int, str]] = []
    unsupported = False
    for tag, (vr, values) in keys.items():
        requested.append((tag, vr))
        attr = _BY_TAG.get(tag)
        empty = not any(v.strip(" ") for v in values)
        if attr is None or (attr.level is not None and attr.level.depth > level.depth):
            unsupported = unsupported or not empty
            continue
        if not attr.matchable or attr.level is None:
            unsupported = unsupported or not empty
            continue
        match = parse_match(attr, values)
        if match is not None:
            matches.append(match)
    _require_unique_keys_above(level, model, {m.attribute.keyword: m for m in matches}, keys)
    returned = [attr.keyword for tag, _ in requested if (attr := _BY_TAG.get(tag)) is not None
                and attr.level is not None and attr.level.depth <= level.depth]
    unique = [UNIQUE_KEYS[lv].keyword for lv in model.levels if lv.depth <= level.depth]
    query = Query(level, tuple(matches), tuple(_unique([*unique, *returned])))
    return FindRequest(model, query, tuple(requested), unsupported)


def retrieve_query(identifier: Dataset, model: InformationModelValues) -> Query:
    """Understand a C-MOVE or C-GET request identifier (PS3.4 §C.4.2.1.4.1, §C.4.3.1.3.1).

    It holds the Query/Retrieve Level and the Unique Keys down to it: a single value above the
    level, a single Patient ID or a list of UIDs at it. Universal retrieval is refused, and so is
    any other non-empty key (optional keys are not allowed in C-MOVE and C-GET, §C.2.2.1.3).

    Raises
    ------
    InvalidQuery
        When the identifier breaks those rules or holds an invalid UID.
    """
    level = _level(identifier, model)
    keys = _keys(identifier)
    unique = {UNIQUE_KEYS[lv].tag: lv for lv in model.levels if lv.depth <= level.depth}
    matches: dict[str, Match] = {}
    for tag, (_, values) in keys.items():
        attr = _BY_TAG.get(tag)
        if tag not in unique or attr is None:
            if any(v.strip(" ") for v in values):
                name = attr.keyword if attr is not None else f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
                raise InvalidQuery(f"{name} is not a Unique Key of the {level.value} level retrieval", tag)
            continue
        match = parse_match(attr, values)
        if match is not None:
            matches[attr.keyword] = match
    _require_unique_keys_above(level, model, matches, keys)
    at_level = matches.get(UNIQUE_KEYS[level].keyword)
    if at_level is None:
        raise InvalidQuery(f"a {level.value} level retrieval needs {UNIQUE_KEYS[level].keyword}",
                           UNIQUE_KEYS[level].tag)
    if any(not isinstance(term, Exact) for term in at_level.terms) or (
            level is QueryRetrieveLevelValues.PATIENT and len(at_level.terms) != 1):
        raise InvalidQuery(f"{UNIQUE_KEYS[level].keyword} must be a single value or a list of UIDs",
                           UNIQUE_KEYS[level].tag)
    return Query(level, tuple(matches.values()))


def response_identifier(request: FindRequest, row: Mapping[str, Any],
                        extra: Mapping[str, Any] | None = None) -> Dataset:
    """The Identifier of one Pending C-FIND response (PS3.4 §C.4.1.1.3.2).

    It holds the Query/Retrieve Level, the Unique Keys of the level and above, and every requested
    key: with its value when the index knows it at this level (``row``, or ``extra`` for what the
    SCP answers itself), empty otherwise. Text is sent in UTF-8 (ISO_IR 192).
    """
    values = {**row, **(extra or {})}
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = request.query.level.value
    known = set(request.query.return_keys)
    for keyword in request.query.return_keys:
        attr = ATTRIBUTES[keyword]
        ds.add_new(attr.tag, attr.vr, _dicom_value(attr, values.get(keyword)))
    for tag, vr in request.requested:
        if tag in ds:
            continue
        answered = _BY_TAG.get(tag)
        if answered is not None and answered.level is None and answered.keyword in values:
            ds.add_new(tag, answered.vr, _dicom_value(answered, values[answered.keyword]))
        elif answered is None or answered.keyword not in known:
            ds.add_new(tag, vr, [] if vr == "SQ" else None)
    return ds


def _dicom_value(attr: QueryAttribute, value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    if isinstance(value, list | tuple):
        return [str(v) for v in value if v is not None and v != ""] or None
    if attr.vr == "IS":
        return int(value)
    return str(value)


def _level(identifier: Dataset, model: InformationModelValues) -> QueryRetrieveLevelValues:
    element = identifier.get(_QUERY_RETRIEVE_LEVEL)
    text = str(element.value or "").strip(" ") if element is not None else ""
    if not text:
        raise InvalidQuery("the identifier has no Query/Retrieve Level (0008,0052)", _QUERY_RETRIEVE_LEVEL)
    try:
        level = QueryRetrieveLevelValues(text)
    except ValueError:
        raise InvalidQuery(f"{text!r} is not a Query/Retrieve Level", _QUERY_RETRIEVE_LEVEL) from None
    if level not in model.levels:
        raise InvalidQuery(f"the {model.value} information model has no {level.value} level", _QUERY_RETRIEVE_LEVEL)
    return level


def _keys(identifier: Dataset) -> dict[int, tuple[str, list[str]]]:
    """Each key's VR and its values as text; the level, the character set and group lengths left out."""
    keys: dict[int, tuple[str, list[str]]] = {}
    for element in identifier:
        tag = int(element.tag)
        if tag in (_QUERY_RETRIEVE_LEVEL, _SPECIFIC_CHARACTER_SET) or Tag(tag).element == 0:
            continue
        vr = element.VR if element.VR not in ("UN", None) or Tag(tag).is_private else _vr(tag)
        keys[tag] = (vr, _texts(element.value, vr))
    return keys


def _vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        return "UN"


def _texts(value: Any, vr: str) -> list[str]:
    if vr == "SQ":
        return ["(sequence)"] if value else []
    if value is None:
        return []
    if isinstance(value, bytes):
        return [value.decode("latin-1")] if value.strip(b" \x00") else []
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _require_unique_keys_above(level: QueryRetrieveLevelValues, model: InformationModelValues,
                               matches: Mapping[str, Match], keys: Mapping[int, Any]) -> None:
    for above in model.levels:
        if above.depth >= level.depth:
            return
        key = UNIQUE_KEYS[above]
        match = matches.get(key.keyword)
        if match is None or len(match.terms) != 1 or not isinstance(match.terms[0], Exact):
            problem = "has no" if key.tag not in keys else "needs a single value of"
            raise InvalidQuery(f"a {level.value} level request {problem} {key.keyword}, the Unique Key of the "
                               f"{above.value} level (PS3.4 §C.4.1.2.1)", key.tag)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
