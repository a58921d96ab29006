"""Remote PACS: archives an organisation queries, retrieves from and sends to, Telerad being the SCU.

A registration names the remote Application Entity (AE title, host, port) and, optionally, the AE
title Telerad calls it with. What Telerad asks of it:

- C-ECHO (PS3.4 Annex A) to check the connection;
- C-FIND in the Study Root Query/Retrieve Information Model (PS3.4 §C.4.1, §C.6.2) at STUDY,
  SERIES or IMAGE level, hierarchically: a SERIES query names its study, an IMAGE query its study
  and series (§C.4.1.3.1.1);
- C-MOVE (§C.4.2) with Telerad's own AE title as the Move Destination, or C-GET (§C.4.3), of a study
  or one series; and C-STORE (Annex B) of a study Telerad holds.

Retrievals and sends run as jobs whose counts are the C-STORE sub-operations (PS3.4 §C.4.2.1.5):
completed, failed, warning, remaining.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from ipaddress import ip_address
from uuid import UUID

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset

from dicom_ingest.dicom.attributes import UID_PATTERN

#: RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens, 253 characters at most.
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?")
#: Most keys one C-FIND request may carry, and the longest value of one (the Standard lets keys
#: exceed their VR's length, PS3.4 §C.2.2.2).
MAX_FIND_KEYS = 64
MAX_KEY_VALUE_LENGTH = 1024
#: Failures kept per job with their reason; the count goes on beyond.
MAX_FAILURES_KEPT = 1000
_DATE_OR_RANGE = re.compile(r"([0-9]{8})?(-([0-9]{8})?)?")
_TIME_OR_RANGE = re.compile(r"([0-9]{2,6}(\.[0-9]{1,6})?)?(-([0-9]{2,6}(\.[0-9]{1,6})?)?)?")


class FindLevelValues(StrEnum):
    """(0008,0052) Query/Retrieve Level of the Study Root model (PS3.4 §C.6.2.1)."""

    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


class RetrieveMethodValues(StrEnum):
    MOVE = "move"  # C-MOVE to Telerad's own AE title: the remote opens an association back to us
    GET = "get"  # C-GET: the instances come back on the same association (SCP/SCU role selection)


class JobOperationValues(StrEnum):
    MOVE = "move"
    GET = "get"
    SEND = "send"  # C-STORE of instances Telerad holds


class JobStatusValues(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"  # every sub-operation succeeded (some perhaps with a warning)
    COMPLETED_WITH_FAILURES = "completed_with_failures"
    FAILED = "failed"  # nothing was transferred, or the operation itself was refused
    INTERRUPTED = "interrupted"  # the process running it stopped or vanished

    @property
    def finished(self) -> bool:
        return self not in (JobStatusValues.QUEUED, JobStatusValues.RUNNING)


class RetrieveStatusValues(IntEnum):
    """C-MOVE and C-GET final statuses (PS3.4 Tables C.4-2 and C.4-3)."""

    SUCCESS = 0x0000
    CANCEL = 0xFE00
    SUB_OPERATIONS_COMPLETE_WITH_FAILURES = 0xB000
    OUT_OF_RESOURCES_NUMBER_OF_MATCHES = 0xA701
    OUT_OF_RESOURCES_SUB_OPERATIONS = 0xA702
    MOVE_DESTINATION_UNKNOWN = 0xA801
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900


_MEANINGS = {
    0x0000: "success",
    0xFE00: "cancelled",
    0xB000: "sub-operations complete, one or more failures or warnings",
    0xA700: "refused: out of resources",
    0xA701: "refused: out of resources, unable to calculate the number of matches",
    0xA702: "refused: out of resources, unable to perform sub-operations",
    0xA801: "refused: Move Destination unknown (the remote PACS must know Telerad's AE title, host and port)",
    0xA900: "identifier does not match SOP class",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
}


def status_meaning(status: int) -> str:
    """A DIMSE status (PS3.7 Annex C) as words, for job details and error messages."""
    if status in _MEANINGS:
        return _MEANINGS[status]
    if 0xA700 <= status <= 0xA7FF:
        return "refused: out of resources"
    if 0xC000 <= status <= 0xCFFF:
        return "failed: unable to process"
    if 0xB000 <= status <= 0xBFFF:
        return "warning"
    return "failed"


def parse_remote_host(value: str) -> str:
    """The host Telerad connects to: an IP address, or a host name (RFC 1123).

    Raises
    ------
    ValueError
        When it is neither.
    """
    host = value.strip()
    try:
        return str(ip_address(host))
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(host) or host.replace(".", "").isdigit():
        raise ValueError("host must be an IP address or a DNS host name")
    return host.rstrip(".").lower()


@dataclass(frozen=True)
class RemotePacs:
    id: UUID
    organization_id: UUID
    ae_title: str
    host: str
    port: int
    description: str
    created_at: datetime
    #: The AE title Telerad calls it with; None for Telerad's own (DICOM_INGEST_AE_TITLE).
    calling_ae_title: str | None = None
    #: The modality registration made for it, so its C-MOVE sub-operations are accepted; None when
    #: the organisation had registered its AE title at that address already.
    modality_id: UUID | None = None

    def our_ae_title(self, default: str) -> str:
        return self.calling_ae_title or default


@dataclass(frozen=True)
class Failure:
    sop_instance_uid: str
    reason: str


@dataclass(frozen=True)
class SubOperations:
    """Counts of C-STORE sub-operations (PS3.4 §C.4.2.1.5); ``remaining`` None until the remote says."""

    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int | None = None


@dataclass(frozen=True)
class Job:
    id: UUID
    organization_id: UUID
    remote_pacs_id: UUID
    remote_ae_title: str
    operation: JobOperationValues
    status: JobStatusValues
    study_instance_uid: str
    series_instance_uid: str | None
    created_at: datetime
    requested_by: UUID | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    counts: SubOperations = SubOperations()
    failures: tuple[Failure, ...] = ()
    #: The final DIMSE status of a retrieval, when the remote sent one.
    final_status: int | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Outcome:
    """How a job ended, before it is written."""

    status: JobStatusValues
    counts: SubOperations
    failures: tuple[Failure, ...] = ()
    final_status: int | None = None
    detail: str | None = None


def retrieval_outcome(final_status: int | None, counts: SubOperations, failures: tuple[Failure, ...],
                      comment: str = "") -> Outcome:
    """The job status a C-MOVE or C-GET ended in, from its final response (PS3.4 §C.4.2.1.5, §C.4.3.1.4).

    Success, or "complete with failures or warnings" where nothing failed, is completed; failures beside
    completed sub-operations are completed with failures; anything else, or failures only, failed.
    """
    if final_status is None:
        return Outcome(JobStatusValues.FAILED, counts, failures, None,
                       comment or "the remote PACS sent no final response")
    done = SubOperations(counts.completed, counts.failed, counts.warning, 0)
    words = f"0x{final_status:04X} {status_meaning(final_status)}" + (f": {comment}" if comment else "")
    if final_status in (RetrieveStatusValues.SUCCESS, RetrieveStatusValues.SUB_OPERATIONS_COMPLETE_WITH_FAILURES):
        return Outcome(transfer_status(done), done, failures, final_status, None if final_status == 0 else words)
    return Outcome(JobStatusValues.FAILED, SubOperations(counts.completed, counts.failed, counts.warning,
                                                         counts.remaining), failures, final_status, words)


def transfer_status(counts: SubOperations) -> JobStatusValues:
    if not counts.failed:
        return JobStatusValues.COMPLETED
    return JobStatusValues.COMPLETED_WITH_FAILURES if counts.completed + counts.warning else JobStatusValues.FAILED


# -- C-FIND identifiers --------------------------------------------------------------------------------------------

#: Keys asked back at each level when the request does not name them (PS3.4 Table C.6-5 to C.6-7).
RETURN_KEYS: Mapping[FindLevelValues, tuple[str, ...]] = {
    FindLevelValues.STUDY: ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
                            "StudyDescription", "ReferringPhysicianName", "PatientName", "PatientID",
                            "PatientBirthDate", "PatientSex", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                            "NumberOfStudyRelatedInstances"),
    FindLevelValues.SERIES: ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber",
                             "SeriesDescription", "BodyPartExamined", "NumberOfSeriesRelatedInstances"),
    FindLevelValues.IMAGE: ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID",
                            "InstanceNumber", "NumberOfFrames"),
}
_UNIQUE_KEYS_ABOVE = {FindLevelValues.STUDY: (), FindLevelValues.SERIES: ("StudyInstanceUID",),
                      FindLevelValues.IMAGE: ("StudyInstanceUID", "SeriesInstanceUID")}
_NOT_KEYS = {"QueryRetrieveLevel", "SpecificCharacterSet"}
#: The VRs whose values are text (PS3.5 Table 6.2-1): what a key given as a string can hold.
TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI",
                      "UR", "UT"})


def find_identifier(level: FindLevelValues, keys: Mapping[str, str]) -> Dataset:
    """The Identifier of a Study Root C-FIND request (PS3.4 §C.4.1.1.3.1) from keys named by keyword.

    An empty value asks for the attribute back (universal matching); other values match as the
    remote PACS matches them: single values, ``*``/``?`` wild cards, backslash-separated UID lists,
    date and time ranges (``20240101-20240131``, ``-20240131``, ``20240101-``). The keys of
    :data:`RETURN_KEYS` for the level are added empty. Text that is not ASCII is sent as UTF-8
    (ISO_IR 192).

    Raises
    ------
    ValueError
        For a keyword the DICOM dictionary does not hold, a sequence, file meta or command element,
        a value too long or with control characters, an invalid UID, date or time, too many keys, or
        a SERIES or IMAGE query without a single value of the Unique Keys above it (§C.4.1.2.1).
    """
    if len(keys) > MAX_FIND_KEYS:
        raise ValueError(f"at most {MAX_FIND_KEYS} keys")
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level.value
    values = {**dict.fromkeys(RETURN_KEYS[level], ""), **keys}
    for keyword, value in values.items():
        tag, vr = _key(keyword, value)
        matched = _value(keyword, vr, value.strip(" "))
        try:
            identifier.add_new(tag, vr, matched)
        except (ValueError, TypeError, OverflowError):
            raise ValueError(f"{keyword}: {value[:70]!r} is not a value of VR {vr}") from None
    for keyword in _UNIQUE_KEYS_ABOVE[level]:
        value = values.get(keyword, "").strip(" ")
        if not value or "\\" in value or "*" in value or "?" in value:
            raise ValueError(f"a {level.value} level query needs one {keyword} (the study root hierarchy, "
                             f"PS3.4 §C.4.1.2.1)")
    if not all(v.isascii() for v in values.values()):
        identifier.SpecificCharacterSet = "ISO_IR 192"
    return identifier


def retrieve_identifier(study_instance_uid: str, series_instance_uid: str | None = None) -> Dataset:
    """The Identifier of a Study Root C-MOVE or C-GET request (PS3.4 §C.4.2.1.4.1): the level and its
    Unique Keys only.

    Raises
    ------
    ValueError
        When a UID is not one.
    """
    identifier = Dataset()
    for uid in (study_instance_uid, series_instance_uid):
        if uid is not None and not is_uid(uid):
            raise ValueError(f"{uid[:70]!r} is not a UID")
    identifier.QueryRetrieveLevel = "STUDY" if series_instance_uid is None else "SERIES"
    identifier.StudyInstanceUID = study_instance_uid
    if series_instance_uid is not None:
        identifier.SeriesInstanceUID = series_instance_uid
    return identifier


def is_uid(value: str) -> bool:
    return len(value) <= 64 and UID_PATTERN.fullmatch(value) is not None


def _key(keyword: str, value: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    if tag is None or keyword in _NOT_KEYS:
        raise ValueError(f"{keyword[:64]!r} is not a DICOM keyword a query can use")
    if tag >> 16 in (0x0000, 0x0002):
        raise ValueError(f"{keyword} is not an attribute of a data set")
    vr = str(dictionary_VR(tag)).split(" or ")[0]
    if vr == "SQ":
        raise ValueError(f"{keyword} is a sequence: sequence matching is not offered")
    if vr not in TEXT_VRS:
        raise ValueError(f"{keyword} has binary values (VR {vr}): only attributes with text values are offered")
    if len(value) > MAX_KEY_VALUE_LENGTH:
        raise ValueError(f"{keyword}: values have at most {MAX_KEY_VALUE_LENGTH} characters")
    if not value.isprintable():
        raise ValueError(f"{keyword}: control characters are not allowed")
    return tag, vr


def _value(keyword: str, vr: str, value: str) -> str | list[str] | None:
    if not value:
        return None
    parts = value.split("\\")
    if vr == "UI" and not all(is_uid(part) for part in parts):
        raise ValueError(f"{keyword}: {value[:70]!r} is not a UID or a backslash-separated list of UIDs")
    if vr == "DA" and not all(_DATE_OR_RANGE.fullmatch(part) and part != "-" for part in parts):
        raise ValueError(f"{keyword}: {value[:70]!r} is not a date (YYYYMMDD) or a range of dates")
    if vr == "TM" and not all(_TIME_OR_RANGE.fullmatch(part) and part != "-" for part in parts):
        raise ValueError(f"{keyword}: {value[:70]!r} is not a time (HHMMSS) or a range of times")
    return parts if len(parts) > 1 else value
