import random
import zlib
from collections.abc import Callable
from dataclasses import replace
from datetime import date

import pytest
from pydicom import config
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from dicom_ingest.dicom.attributes import (
    UID_PATTERN,
    InstanceAttributes,
    InvalidInstance,
    StoreStatusValues,
    read_instance,
)

TRANSFER_SYNTAXES = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
                     DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit]
REQUIRED_UIDS = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"]
ROOT = "1.2.826.0.1.3680043.10.1234."
EXPECTED = InstanceAttributes(
    sop_class_uid=CTImageStorage, sop_instance_uid=ROOT + "3.1", study_instance_uid=ROOT + "1",
    series_instance_uid=ROOT + "2", patient_id="PAT1", issuer_of_patient_id="HOSPITAL", patient_name="Müller^Jürgen",
    patient_birth_date=date(1970, 1, 1), patient_sex="M", accession_number="ACC1", study_date=date(2024, 2, 29),
    study_time="101500.123", study_id="7", study_description="Thorax nativ", referring_physician_name="Ärztin^Eva",
    modality="CT", series_number=3, series_description="Lunge", body_part_examined="CHEST", instance_number=12,
    number_of_frames=1, requested_procedure_priority="STAT")


def an_instance(transfer_syntax: UID = ExplicitVRLittleEndian, **changes: object) -> Dataset:
    """``Keyword=None`` removes the element; a ``bytes`` value is written as it is (NUL-padded to even length)."""
    with config.disable_value_validation():  # some values below are wrong on purpose
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ROOT + "3.1"
        ds.StudyDate, ds.StudyTime = "20240229", "101500.123"
        ds.AccessionNumber, ds.Modality = "ACC1", "CT"
        ds.ReferringPhysicianName = "Ärztin^Eva"
        ds.StudyDescription, ds.SeriesDescription = "Thorax nativ", "Lunge"
        nested = Dataset()
        nested.PatientName, nested.PatientID = "Nested^Not", "NOT-TOP-LEVEL"
        ds.ReferencedPatientSequence = Sequence([nested])
        ds["ReferencedPatientSequence"].is_undefined_length = True
        ds.PatientName, ds.PatientID, ds.IssuerOfPatientID = "Müller^Jürgen", "PAT1", "HOSPITAL"
        ds.PatientBirthDate, ds.PatientSex = "19700101", "M"
        ds.BodyPartExamined = "chest"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = ROOT + "1", ROOT + "2"
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "7", 3, 12
        ds.NumberOfFrames = 1
        ds.BitsAllocated = 8
        ds.RequestedProcedurePriority = "STAT"
        if transfer_syntax.is_encapsulated:
            ds.add(DataElement(0x7FE00010, "OB", encapsulate([b"\xff\xd8" + bytes(40) + b"\xff\xd9"]),
                               is_undefined_length=True))
        else:
            ds.PixelData = bytes(64)
        for keyword, value in changes.items():
            if value is None:
                delattr(ds, keyword)
            elif isinstance(value, bytes):  # OB writes the bytes untouched; the reader ignores the VR
                ds[tag_for_keyword(keyword)] = DataElement(tag_for_keyword(keyword), "OB", value)
            else:
                setattr(ds, keyword, value)
    return ds


def encode(ds: Dataset, transfer_syntax: UID = ExplicitVRLittleEndian) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian
    with config.disable_value_validation():
        write_dataset(fp, ds)
    if transfer_syntax.is_deflated:
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return compressor.compress(fp.getvalue()) + compressor.flush()
    return bytes(fp.getvalue())


def read(transfer_syntax: UID = ExplicitVRLittleEndian, **changes: object) -> InstanceAttributes:
    return read_instance(encode(an_instance(transfer_syntax, **changes), transfer_syntax), transfer_syntax)


@pytest.mark.parametrize("transfer_syntax", TRANSFER_SYNTAXES, ids=lambda ts: ts.name)
def test_the_indexed_attributes_are_read_in_every_transfer_syntax(transfer_syntax: UID) -> None:
    assert read(transfer_syntax) == EXPECTED


@pytest.mark.parametrize(("character_set", "name", "description"), [
    ("", "Doe^Jane", "CT chest"),
    ("ISO_IR 100", "Ødegård^Åse", "Thorax nativ, Größe"),
    ("ISO_IR 144", "Иванова^Мария", "Грудная клетка"),
    ("ISO_IR 192", "Ødegård^Åse", "胸部 CT"),
    (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう", "胸部"),
], ids=["default", "latin-1", "cyrillic", "utf-8", "iso 2022 japanese"])
def test_names_and_descriptions_are_decoded_in_the_declared_character_set(
        character_set: str | list[str], name: str, description: str) -> None:
    attributes = read(SpecificCharacterSet=character_set or None, PatientName=name, ReferringPhysicianName=name,
                      StudyDescription=description, SeriesDescription=description)

    assert attributes.patient_name == attributes.referring_physician_name == name
    assert attributes.study_description == attributes.series_description == description


@pytest.mark.filterwarnings("ignore:Unknown encoding")
def test_an_unknown_character_set_does_not_reject_the_instance() -> None:
    attributes = read(SpecificCharacterSet="ISO_IR 999", PatientName=b"M\xfcller^J\xfcrgen")

    assert attributes.patient_name == "Müller^Jürgen"


@pytest.mark.parametrize(("value", "expected"), [
    (b"20240229", date(2024, 2, 29)), (b"19991231 ", date(1999, 12, 31)), (b"20230229", None),
    (b"2024.01.31", None), (b"2024013", None), (b"abcdefgh", None), (b"\xb2\xb2\xb2\xb2\xb2\xb2\xb2\xb2", None),
    (b"", None)])
def test_dates_are_read_and_impossible_dates_dropped(value: bytes, expected: date | None) -> None:
    attributes = read(StudyDate=value, PatientBirthDate=value)

    assert attributes.study_date == attributes.patient_birth_date == expected


@pytest.mark.parametrize(("value", "expected"), [
    (b"3", 3), (b" 12 ", 12), (b"+7", 7), (b"-1", -1), (b"3\\4", 3), (b"2147483647", 2**31 - 1),
    (b"2147483648", None), (b"1.0", None), (b"1e3", None), (b"seven", None), (b"", None)])
def test_integer_strings_are_read_and_anything_else_dropped(value: bytes, expected: int | None) -> None:
    attributes = read(SeriesNumber=value, InstanceNumber=value, NumberOfFrames=value)

    assert attributes.series_number == attributes.instance_number == attributes.number_of_frames == expected


@pytest.mark.parametrize(("keyword", "field", "limit"), [
    ("PatientID", "patient_id", 64), ("IssuerOfPatientID", "issuer_of_patient_id", 64),
    ("PatientName", "patient_name", 324), ("ReferringPhysicianName", "referring_physician_name", 324),
    ("AccessionNumber", "accession_number", 16), ("StudyID", "study_id", 16), ("StudyTime", "study_time", 16),
    ("StudyDescription", "study_description", 64), ("SeriesDescription", "series_description", 64),
    ("PatientSex", "patient_sex", 16), ("Modality", "modality", 16), ("BodyPartExamined", "body_part_examined", 16),
    ("RequestedProcedurePriority", "requested_procedure_priority", 16)])
def test_long_values_are_clipped_to_the_width_of_the_index(keyword: str, field: str, limit: int) -> None:
    attributes = read(**{keyword: "Ä" * (limit + 100)})

    assert getattr(attributes, field) == "Ä" * limit


def test_modality_and_body_part_are_upper_case() -> None:
    attributes = read(Modality="mr", BodyPartExamined="Head")

    assert (attributes.modality, attributes.body_part_examined) == ("MR", "HEAD")


def test_optional_attributes_may_all_be_missing() -> None:
    optional = ["SpecificCharacterSet", "StudyDate", "StudyTime", "AccessionNumber", "Modality",
                "ReferringPhysicianName", "StudyDescription", "SeriesDescription", "PatientName", "PatientID",
                "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "BodyPartExamined", "StudyID",
                "SeriesNumber", "InstanceNumber", "NumberOfFrames", "RequestedProcedurePriority"]

    attributes = read(**dict.fromkeys(optional))

    assert attributes == InstanceAttributes(EXPECTED.sop_class_uid, EXPECTED.sop_instance_uid,
                                            EXPECTED.study_instance_uid, EXPECTED.series_instance_uid)


def cut_at(marker: bytes, past: int, transfer_syntax: UID = ExplicitVRLittleEndian) -> tuple[bytes, UID]:
    data = encode(an_instance(transfer_syntax), transfer_syntax)
    return data[:data.rindex(marker) + past], transfer_syntax  # the top-level element, not a nested one


PATIENT_NAME = b"\x10\x00\x10\x00PN"
UNDECODABLE = {
    "cut inside a tag": lambda: cut_at(PATIENT_NAME, 3),
    "cut inside a header": lambda: cut_at(PATIENT_NAME, 7),
    "cut inside a value": lambda: cut_at(PATIENT_NAME, 12),
    "cut inside a sequence": lambda: cut_at(b"\x08\x00\x20\x11SQ", 20),
    "cut before a sequence delimiter": lambda: cut_at(b"\xfe\xff\xdd\xe0", 0),
    "cut inside pixel data": lambda: cut_at(b"\xe0\x7f\x10\x00OB", 30),
    "cut inside a pixel data fragment": lambda: cut_at(b"\xff\xd8", 10, JPEGBaseline8Bit),
    "cut inside a value in implicit vr": lambda: cut_at(b"\x10\x00\x10\x00", 6, ImplicitVRLittleEndian),
    "cut inside a value in big endian": lambda: cut_at(b"\x00\x10\x00\x10PN", 12, ExplicitVRBigEndian),
    "cut deflated stream": lambda: (encode(an_instance(), DeflatedExplicitVRLittleEndian)[:-4],
                                    DeflatedExplicitVRLittleEndian),
    "trailing garbage": lambda: (encode(an_instance()) + b"garbage!", ExplicitVRLittleEndian),
    "random bytes": lambda: (random.Random(3).randbytes(512), ExplicitVRLittleEndian),
    "random bytes deflated": lambda: (random.Random(3).randbytes(512), DeflatedExplicitVRLittleEndian),
}


@pytest.mark.parametrize("undecodable", list(UNDECODABLE.values()), ids=list(UNDECODABLE))
def test_bytes_that_are_no_well_formed_data_set_cannot_be_understood(
        undecodable: Callable[[], tuple[bytes, UID]]) -> None:
    data, transfer_syntax = undecodable()

    with pytest.raises(InvalidInstance) as raised:
        read_instance(data, transfer_syntax)

    assert raised.value.status == StoreStatusValues.CANNOT_UNDERSTAND


@pytest.mark.parametrize("keyword", REQUIRED_UIDS)
@pytest.mark.parametrize("value", [None, b"", b"  "], ids=["absent", "empty", "blank"])
def test_an_instance_without_any_of_the_four_uids_does_not_match_its_sop_class(keyword: str, value: object) -> None:
    with pytest.raises(InvalidInstance, match="missing") as raised:
        read(**{keyword: value})

    assert raised.value.status == StoreStatusValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS


@pytest.mark.parametrize("keyword", REQUIRED_UIDS)
@pytest.mark.parametrize("value", [b"1.2.840.abc", ("1." + "2" * 63).encode(), b"../x", b"1.2/../3", b"1..2", b".1.2",
                                   b"1.2.", b"1.2.3\n", b"1.2 .3", "1.٢.3".encode()],
                         ids=["letters", "65 characters", "dot dot slash", "slash", "empty component",
                              "leading dot", "trailing dot", "trailing newline", "inner space", "arabic digit"])
def test_an_instance_with_a_malformed_uid_does_not_match_its_sop_class(keyword: str, value: bytes) -> None:
    with pytest.raises(InvalidInstance, match="not a valid UID") as raised:
        read(**{keyword: value})

    assert raised.value.status == StoreStatusValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS


def test_a_uid_of_64_characters_is_accepted() -> None:
    uid = "1." + "2" * 62

    assert read(StudyInstanceUID=uid) == replace(EXPECTED, study_instance_uid=uid)


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(out) + 1)
        kind = rng.randrange(6)
        if kind == 0 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif kind == 1:  # where a length field is, this makes it undefined or huge
            out[at:at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\xfe\xff\x00\xe0", rng.randbytes(4)])
        elif kind == 2:
            del out[at:at + rng.randint(1, 16)]
        elif kind == 3:
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif kind == 4:
            start = rng.randrange(len(out) + 1)
            out[at:at] = out[start:start + rng.randint(1, 64)]
        else:
            del out[at:]
    return bytes(out)


@pytest.mark.filterwarnings("ignore::UserWarning:pydicom.*")  # mutated character sets, rightly warned about
@pytest.mark.parametrize("transfer_syntax", TRANSFER_SYNTAXES, ids=lambda ts: ts.name)
def test_any_mutation_is_either_read_or_rejected_with_a_store_status(transfer_syntax: UID) -> None:
    rng = random.Random(f"telerad-{transfer_syntax}")
    plain = encode(an_instance(transfer_syntax), ExplicitVRLittleEndian if transfer_syntax.is_deflated
                   else transfer_syntax)
    outcomes: set[StoreStatusValues] = set()
    for attempt in range(400):
        data = mutate(plain, rng)
        if transfer_syntax.is_deflated:
            compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            deflated = compressor.compress(data) + compressor.flush()
            data = deflated if attempt % 2 else mutate(deflated, rng)
        try:
            attributes = read_instance(data, transfer_syntax)
        except InvalidInstance as error:
            assert error.status in {StoreStatusValues.CANNOT_UNDERSTAND,
                                    StoreStatusValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS}
            outcomes.add(error.status)
        except Exception as error:
            pytest.fail(f"{transfer_syntax.name}, attempt {attempt}: {error!r} reading {data!r}")
        else:
            for uid in (attributes.sop_class_uid, attributes.sop_instance_uid, attributes.study_instance_uid,
                        attributes.series_instance_uid):
                assert len(uid) <= 64 and UID_PATTERN.fullmatch(uid), uid
            outcomes.add(StoreStatusValues.SUCCESS)
    assert StoreStatusValues.CANNOT_UNDERSTAND in outcomes and StoreStatusValues.SUCCESS in outcomes
