import random
import zlib

import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from dicom_ingest.dicom.walk import MAX_DEPTH, MalformedDataset, inflate, top_level_values

SOP_INSTANCE_UID, PATIENT_ID, REFERENCED_SOP_INSTANCE_UID, PIXEL_DATA = 0x00080018, 0x00100020, 0x00081155, 0x7FE00010
WANTED = (SOP_INSTANCE_UID, PATIENT_ID, REFERENCED_SOP_INSTANCE_UID)
TRANSFER_SYNTAXES = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
                     DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit]
UNCOMPRESSED = [ts for ts in TRANSFER_SYNTAXES if ts != DeflatedExplicitVRLittleEndian]
ITEM_DELIMITER, SEQUENCE_DELIMITER = b"\xfe\xff\x0d\xe0\0\0\0\0", b"\xfe\xff\xdd\xe0\0\0\0\0"


def encode(ds: Dataset, transfer_syntax: UID) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian
    write_dataset(fp, ds)
    if transfer_syntax.is_deflated:
        return deflate(fp.getvalue())
    return bytes(fp.getvalue())


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def un_of_undefined_length() -> DataElement:
    """A private element sent as UN: its items are Implicit VR Little Endian whatever the transfer syntax."""
    code = Dataset()
    code.CodeValue = "UN1"
    item = encode(code, ImplicitVRLittleEndian)
    items = (b"\xfe\xff\x00\xe0" + len(item).to_bytes(4, "little") + item
             + b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + item + ITEM_DELIMITER)
    return DataElement(0x00091010, "UN", items, is_undefined_length=True)


def a_dataset(transfer_syntax: UID) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.1234.1"
    code = Dataset()
    code.CodeValue = "T-D4000"
    ds.ProcedureCodeSequence = Sequence([code])  # defined length, items of defined length
    referenced = Dataset()
    referenced.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.10.1234.2"
    referenced.PurposeOfReferenceCodeSequence = Sequence([code])
    referenced.is_undefined_length_sequence_item = True
    ds.ReferencedImageSequence = Sequence([referenced, Dataset()])
    ds["ReferencedImageSequence"].is_undefined_length = True
    ds.add_new(0x00090010, "LO", "TELERAD TEST")
    if transfer_syntax != ExplicitVRBigEndian:  # whose UN items would be little endian inside a big endian stream
        ds.add(un_of_undefined_length())
    ds.PatientID = "PAT1"
    ds.BitsAllocated = 8
    if transfer_syntax.is_encapsulated:
        frames = [b"\xff\xd8" + bytes(range(30)) + b"\xff\xd9", b"\xff\xd8" + bytes(12) + b"\xff\xd9"]
        ds.add(DataElement(PIXEL_DATA, "OB", encapsulate(frames, fragments_per_frame=2), is_undefined_length=True))
    else:
        ds.PixelData = bytes(range(64))
    return ds


def top_level_ends(ds: Dataset, transfer_syntax: UID) -> set[int]:
    """Offsets at which a prefix of the encoding is itself a whole data set."""
    ends = {0}
    prefix = Dataset()
    for element in ds:
        prefix.add(element)
        ends.add(len(encode(prefix, transfer_syntax)))
    return ends


@pytest.mark.parametrize("transfer_syntax", TRANSFER_SYNTAXES, ids=lambda ts: ts.name)
def test_a_well_formed_data_set_is_walked_to_its_end_and_only_top_level_values_are_returned(
        transfer_syntax: UID) -> None:
    data = encode(a_dataset(transfer_syntax), transfer_syntax)

    found = top_level_values(data, transfer_syntax, WANTED)

    assert found == {SOP_INSTANCE_UID: b"1.2.826.0.1.3680043.10.1234.1\0", PATIENT_ID: b"PAT1"}


@pytest.mark.parametrize("transfer_syntax", UNCOMPRESSED, ids=lambda ts: ts.name)
def test_every_cut_between_top_level_elements_is_a_data_set_and_every_other_cut_is_refused(
        transfer_syntax: UID) -> None:
    ds = a_dataset(transfer_syntax)
    data, ends = encode(ds, transfer_syntax), top_level_ends(ds, transfer_syntax)
    assert len(data) in ends

    refused = set()
    for cut in range(len(data)):
        try:
            top_level_values(data[:cut], transfer_syntax, WANTED)
        except MalformedDataset:
            refused.add(cut)

    assert refused == set(range(len(data))) - ends


def test_every_cut_of_a_deflated_stream_is_refused() -> None:
    data = encode(a_dataset(DeflatedExplicitVRLittleEndian), DeflatedExplicitVRLittleEndian)

    for cut in range(len(data)):
        with pytest.raises(MalformedDataset):
            top_level_values(data[:cut], DeflatedExplicitVRLittleEndian, WANTED)


@pytest.mark.parametrize("garbage", [b"\0", b"\0\0\0\0", ITEM_DELIMITER, SEQUENCE_DELIMITER,
                                     b"\x10\x00\x20\x00LO\x02\x00P2", random.Random(1).randbytes(64)],
                         ids=["one byte", "half a header", "item delimiter", "sequence delimiter",
                              "an element out of order", "random bytes"])
@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, JPEGBaseline8Bit], ids=lambda ts: ts.name)
def test_bytes_after_the_end_of_the_data_set_are_refused(transfer_syntax: UID, garbage: bytes) -> None:
    data = encode(a_dataset(transfer_syntax), transfer_syntax)

    with pytest.raises(MalformedDataset):
        top_level_values(data + garbage, transfer_syntax, WANTED)


@pytest.mark.parametrize("garbage", [b"\x01", b"\0\0", b"\x08\0\x18\0UI\x02\x001\0"],
                         ids=["one byte", "two bytes", "an element"])
def test_bytes_after_the_end_of_a_deflated_stream_are_refused(garbage: bytes) -> None:
    data = encode(a_dataset(DeflatedExplicitVRLittleEndian), DeflatedExplicitVRLittleEndian)

    with pytest.raises(MalformedDataset):
        top_level_values(data + garbage, DeflatedExplicitVRLittleEndian, WANTED)


def test_a_deflated_stream_padded_to_even_length_is_accepted() -> None:
    data = encode(a_dataset(DeflatedExplicitVRLittleEndian), DeflatedExplicitVRLittleEndian)

    assert PATIENT_ID in top_level_values(data + b"\0", DeflatedExplicitVRLittleEndian, WANTED)


def test_a_deflate_bomb_is_refused_at_the_limit() -> None:
    bomb = deflate(bytes(8 * 1024**2))
    assert len(bomb) < 10_000

    assert len(inflate(bomb, limit=16 * 1024**2)) == 8 * 1024**2
    with pytest.raises(MalformedDataset, match="past"):
        inflate(bomb, limit=1024**2)


def test_bytes_that_are_not_deflated_are_refused() -> None:
    with pytest.raises(MalformedDataset):
        inflate(b"\xff" + b"not a deflate stream")


def nested(depth: int, *, undefined_length: bool) -> Dataset:
    ds = Dataset()
    ds.CodeValue = "LEAF"
    for _ in range(depth):
        ds.is_undefined_length_sequence_item = undefined_length
        parent = Dataset()
        parent.ContentSequence = Sequence([ds])
        parent["ContentSequence"].is_undefined_length = undefined_length
        ds = parent
    return ds


@pytest.mark.parametrize(("transfer_syntax", "undefined_length"), [
    (ImplicitVRLittleEndian, True), (ExplicitVRLittleEndian, True), (ExplicitVRLittleEndian, False)],
    ids=["implicit undefined length", "explicit undefined length", "explicit defined length"])
def test_sequences_nest_to_max_depth_and_no_deeper(transfer_syntax: UID, undefined_length: bool) -> None:
    deepest = encode(nested(MAX_DEPTH, undefined_length=undefined_length), transfer_syntax)
    too_deep = encode(nested(MAX_DEPTH + 1, undefined_length=undefined_length), transfer_syntax)

    assert top_level_values(deepest, transfer_syntax, WANTED) == {}
    with pytest.raises(MalformedDataset, match="deeper"):
        top_level_values(too_deep, transfer_syntax, WANTED)


def test_a_defined_length_sequence_whose_item_runs_past_it_is_refused() -> None:
    ds = Dataset()
    ds.ProcedureCodeSequence = Sequence([Dataset()])
    ds.PatientID = "PAT1"
    data = bytearray(encode(ds, ExplicitVRLittleEndian))
    item_length = data.index(b"\xfe\xff\x00\xe0") + 4
    data[item_length:item_length + 4] = (10).to_bytes(4, "little")  # the item now swallows Patient ID

    with pytest.raises(MalformedDataset, match="item"):
        top_level_values(bytes(data), ExplicitVRLittleEndian, WANTED)


def encoded_elements(*elements: tuple[int, str, str]) -> bytes:
    """Elements encoded one after another, in the order given rather than pydicom's tag order."""
    data = b""
    for tag, vr, value in elements:
        ds = Dataset()
        ds.add_new(tag, vr, value)
        data += encode(ds, ExplicitVRLittleEndian)
    return data


@pytest.mark.parametrize("elements", [
    [(PATIENT_ID, "LO", "PAT1"), (SOP_INSTANCE_UID, "UI", "1.2.3")],
    [(PATIENT_ID, "LO", "PAT1"), (PATIENT_ID, "LO", "PAT2")]], ids=["descending", "repeated"])
def test_tags_must_ascend(elements: list[tuple[int, str, str]]) -> None:
    with pytest.raises(MalformedDataset, match="order"):
        top_level_values(encoded_elements(*elements), ExplicitVRLittleEndian, WANTED)


def test_an_explicit_vr_that_is_not_two_capitals_is_refused() -> None:
    data = bytearray(encoded_elements((PATIENT_ID, "LO", "PAT1")))
    data[4:6] = b"l0"

    with pytest.raises(MalformedDataset, match="VR"):
        top_level_values(bytes(data), ExplicitVRLittleEndian, WANTED)


@pytest.mark.parametrize(("find", "replace"), [
    (b"\xfe\xff\x00\xe0\x04\x00\x00\x00", b"\xfe\xff\x00\xe0\xff\xff\xff\xff"),
    (b"\xfe\xff\x00\xe0\x04\x00\x00\x00", b"\x08\x00\x18\x00\x04\x00\x00\x00"),
    (b"\xfe\xff\xdd\xe0\x00\x00\x00\x00", b"\xfe\xff\x0d\xe0\x00\x00\x00\x00")],
    ids=["a fragment of undefined length", "an element among the fragments", "an item delimiter ending them"])
def test_broken_pixel_data_fragments_are_refused(find: bytes, replace: bytes) -> None:
    ds = Dataset()
    ds.add(DataElement(PIXEL_DATA, "OB", encapsulate([b"\xff\xd8\xff\xd9"], has_bot=False), is_undefined_length=True))
    data = encode(ds, JPEGBaseline8Bit)
    assert find in data

    with pytest.raises(MalformedDataset):
        top_level_values(data.replace(find, replace), JPEGBaseline8Bit, WANTED)


def test_an_item_delimiter_outside_any_item_is_refused() -> None:
    with pytest.raises(MalformedDataset, match="delimiter"):
        top_level_values(ITEM_DELIMITER, ExplicitVRLittleEndian, WANTED)
