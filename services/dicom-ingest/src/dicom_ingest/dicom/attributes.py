"""The attributes of a received instance that the index keeps, read without a full parse."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import date
from enum import IntEnum

from pydicom.charset import convert_encodings, decode_bytes, default_encoding, python_encoding

from dicom_ingest.dicom.walk import MalformedDataset, top_level_values

UID_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)*")  # used with fullmatch: "$" would let "1.2\n" through
#: The Python codecs of the Defined Terms of Specific Character Set (PS3.3 §C.12.1.1.2); pydicom would also
#: take any other Python codec name it is given, such as ``unicode_escape``, which makes lone surrogates.
_CHARACTER_SET_CODECS = frozenset(python_encoding.values())
#: Past these, a value is no text a modality meant (PN is at most 3 x 64 characters, PS3.5 §6.2), and pydicom
#: would log a warning per escape sequence it does not know: 32,000 of them in 64 KB are 3 s and 6 MB of logs.
_MAX_CHARACTER_SETS, _MAX_ENCODED_BYTES, _MAX_ESCAPES = 16, 2048, 32
# pydicom logs each doubtful character set or value, and also warns: once per distinct message, which
# Python remembers for good in pydicom.charset's __warningregistry__ (memory a sender could grow at will).
warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom\.charset")


class StoreStatusValues(IntEnum):
    """C-STORE response statuses (PS3.4 §B.2.3, PS3.7 Annex C)."""

    SUCCESS = 0x0000
    OUT_OF_RESOURCES = 0xA700
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000


class InvalidInstance(ValueError):
    def __init__(self, reason: str, status: StoreStatusValues) -> None:
        super().__init__(reason)
        self.status = status


TAGS = {
    "specific_character_set": 0x00080005, "sop_class_uid": 0x00080016, "sop_instance_uid": 0x00080018,
    "study_date": 0x00080020, "study_time": 0x00080030, "accession_number": 0x00080050,
    "modality": 0x00080060, "referring_physician_name": 0x00080090, "study_description": 0x00081030,
    "series_description": 0x0008103E, "patient_name": 0x00100010, "patient_id": 0x00100020,
    "issuer_of_patient_id": 0x00100021, "patient_birth_date": 0x00100030, "patient_sex": 0x00100040,
    "body_part_examined": 0x00180015, "study_instance_uid": 0x0020000D, "series_instance_uid": 0x0020000E,
    "study_id": 0x00200010, "series_number": 0x00200011, "instance_number": 0x00200013,
    "number_of_frames": 0x00280008, "requested_procedure_priority": 0x00401003,
}
_PERSON_NAMES = {"patient_name", "referring_physician_name"}
_TEXTS = {"study_description", "series_description"} | _PERSON_NAMES
_UIDS = ("sop_class_uid", "sop_instance_uid", "study_instance_uid", "series_instance_uid")


@dataclass(frozen=True)
class InstanceAttributes:
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str = ""
    issuer_of_patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: date | None = None
    patient_sex: str = ""
    accession_number: str = ""
    study_date: date | None = None
    study_time: str = ""
    study_id: str = ""
    study_description: str = ""
    referring_physician_name: str = ""
    modality: str = ""
    series_number: int | None = None
    series_description: str = ""
    body_part_examined: str = ""
    instance_number: int | None = None
    number_of_frames: int | None = None
    requested_procedure_priority: str = ""


def read_instance(data: bytes, transfer_syntax_uid: str) -> InstanceAttributes:
    """Check the data set's structure and read the indexed attributes.

    Raises
    ------
    InvalidInstance
        With ``CANNOT_UNDERSTAND`` when the bytes are not a well-formed data set, with
        ``DATA_SET_DOES_NOT_MATCH_SOP_CLASS`` when a required UID is missing or not a UID.
    """
    try:
        raw = top_level_values(data, transfer_syntax_uid, TAGS.values())
    except MalformedDataset as error:
        raise InvalidInstance(str(error), StoreStatusValues.CANNOT_UNDERSTAND) from None
    charsets = [c.strip() for c in _text(raw.get(TAGS["specific_character_set"], b"")).split("\\") if c.strip()]
    encodings = _encodings(charsets)
    values: dict[str, object] = {}
    for name, tag in TAGS.items():
        if tag not in raw or name == "specific_character_set":
            continue
        if name in _UIDS:
            values[name] = _text(raw[tag])  # a NUL inside is no UID: the check below refuses it
        elif name in _TEXTS:
            values[name] = _without_nul(_decode(raw[tag], encodings, person=name in _PERSON_NAMES))
        else:
            values[name] = _without_nul(_text(raw[tag]))
    for uid in _UIDS:
        text = str(values.get(uid, ""))
        if not text:
            raise InvalidInstance(f"{uid} is missing", StoreStatusValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS)
        if len(text) > 64 or not UID_PATTERN.fullmatch(text):
            raise InvalidInstance(f"{uid} is not a valid UID", StoreStatusValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS)
    for name in ("patient_birth_date", "study_date"):
        values[name] = _date(str(values.get(name, "")))
    for name in ("series_number", "instance_number", "number_of_frames"):
        values[name] = _int(str(values.get(name, "")))
    values["modality"] = str(values.get("modality", "")).upper()[:16]
    values["body_part_examined"] = str(values.get("body_part_examined", "")).upper()[:16]
    _clip(values, {"patient_id": 64, "issuer_of_patient_id": 64, "patient_name": 324, "accession_number": 16,
                   "study_id": 16, "study_description": 64, "series_description": 64, "patient_sex": 16,
                   "referring_physician_name": 324, "study_time": 16, "requested_procedure_priority": 16})
    return InstanceAttributes(**values)  # type: ignore[arg-type]


def _text(value: bytes) -> str:
    return value.decode("latin-1").strip(" \x00")


def _encodings(charsets: list[str]) -> list[str] | None:
    """Python codecs for the Specific Character Set (0008,0005), or None when it is not one."""
    if len(charsets) > _MAX_CHARACTER_SETS:
        return None
    try:
        encodings = convert_encodings(charsets or ["ISO_IR 6"])
    except Exception:
        return None
    return [e if e in _CHARACTER_SET_CODECS else default_encoding for e in encodings]


def _decode(value: bytes, encodings: list[str] | None, *, person: bool) -> str:
    """Text in the data set's character sets (PS3.5 §6.1); read as Latin-1 when they cannot say."""
    value = value[:_MAX_ENCODED_BYTES]
    if encodings is None or value.count(b"\x1b") > _MAX_ESCAPES:
        return _text(value)
    try:
        return str(decode_bytes(value, encodings, {0x5E, 0x3D} if person else set())).strip(" \x00")
    except Exception:
        return _text(value)


def _without_nul(value: str) -> str:
    """No character repertoire of PS3.5 §6.1 has NUL outside padding, and PostgreSQL text cannot hold it:
    a sender's stray NUL inside a value would otherwise fail the index with a misleading A700."""
    return value.replace("\x00", "").strip(" ")


def _date(value: str) -> date | None:
    value = value.strip()
    if len(value) == 8 and value.isdigit():
        try:
            return date(int(value[:4]), int(value[4:6]), int(value[6:]))
        except ValueError:
            return None
    return None


def _int(value: str) -> int | None:
    value = value.strip().split("\\")[0]
    try:
        number = int(value)
    except ValueError:
        return None
    return number if -(2**31) <= number < 2**31 else None


def _clip(values: dict[str, object], limits: dict[str, int]) -> None:
    for name, limit in limits.items():
        if name in values:
            values[name] = str(values[name])[:limit]
