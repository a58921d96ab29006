import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.filebase import DicomBytesIO
from pydicom.uid import ExplicitVRBigEndian, RLELossless, generate_uid

from dicom_ingest.dicom.dicom_json import instance_metadata
from dicom_ingest.dicom.frames import NoSuchBulkData, NoSuchFrame, parse_frame_list, read_bulk_data, read_frames
from support.studies import ORG_ROOT, ct_instance

FRAMES = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5) * 97  # three 4x5 frames, distinct values


def multi_frame(frames: np.ndarray = FRAMES) -> Dataset:
    ds = ct_instance(generate_uid(ORG_ROOT), generate_uid(ORG_ROOT), 1, 1, frames.astype("<u2").tobytes(),
                     frames.shape[1], "ACC", "PAT", "Doe^Jane")
    ds.Columns, ds.NumberOfFrames = frames.shape[2], frames.shape[0]
    return ds


def file_bytes(ds: Dataset, **options: bool) -> bytes:
    out = DicomBytesIO()
    ds.save_as(out, enforce_file_format=True, **options)
    return bytes(out.getvalue())


def test_frame_lists() -> None:
    assert parse_frame_list("1") == [1]
    assert parse_frame_list("3,1,3") == [3, 1, 3]
    for bad in ("", "0", "1,,2", "-1", "a", "1.5", "1, x", "9999999999"):
        with pytest.raises(ValueError):
            parse_frame_list(bad)


def test_native_frames_are_cut_out_in_little_endian() -> None:
    data = file_bytes(multi_frame())
    frames = read_frames(data, [3, 1])
    assert frames.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert frames.frames == [FRAMES[2].astype("<u2").tobytes(), FRAMES[0].astype("<u2").tobytes()]
    assert b"".join(read_frames(data).frames) == FRAMES.astype("<u2").tobytes()
    with pytest.raises(NoSuchFrame):
        read_frames(data, [4])


def test_big_endian_pixel_data_is_sent_little_endian() -> None:
    ds = multi_frame()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.PixelData = FRAMES.astype(">u2").tobytes()  # pydicom writes OW values as they are given
    data = file_bytes(ds, little_endian=False, implicit_vr=False)
    assert FRAMES.astype(">u2").tobytes() in data  # stored big endian...
    assert read_frames(data, [2]).frames == [FRAMES[1].astype("<u2").tobytes()]  # ...sent little endian


def test_one_bit_frames_that_do_not_end_on_a_byte() -> None:
    bits = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 1]], dtype=np.uint8)  # 9 bits a frame
    ds = multi_frame(np.zeros((2, 3, 3), np.uint16))
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
    second = 1 - bits
    ds.PixelData = np.packbits(np.concatenate([bits.ravel(), second.ravel()]), bitorder="little").tobytes()
    frames = read_frames(file_bytes(ds)).frames
    assert [np.unpackbits(np.frombuffer(f, np.uint8), bitorder="little")[:9].tolist() for f in frames] == [
        bits.ravel().tolist(), second.ravel().tolist()]


def test_encapsulated_frames_are_the_compressed_bitstreams() -> None:
    ds = multi_frame()
    ds.compress(RLELossless)
    expected = list(generate_frames(ds.PixelData, number_of_frames=3))
    frames = read_frames(file_bytes(ds), [2, 3])
    assert frames.transfer_syntax_uid == RLELossless and frames.frames == expected[1:]


def test_an_instance_without_pixel_data_has_no_frames() -> None:
    ds = multi_frame()
    del ds.PixelData
    with pytest.raises(NoSuchFrame):
        read_frames(file_bytes(ds), [1])


def test_metadata_refers_to_bulk_data_and_keeps_the_rest() -> None:
    ds = multi_frame()
    ds.add_new(0x00091010, "OB", bytes(4000))  # a large private binary value
    ds.add_new(0x00091011, "OB", b"tiny")
    ds.add_new(0xFFFCFFFC, "OB", bytes(10))  # trailing padding
    data = file_bytes(ds)
    metadata = instance_metadata(data, "https://pacs/dicomweb/studies/1/series/2/instances/3/bulkdata")

    assert metadata["7FE00010"] == {"vr": "OW",
                                    "BulkDataURI": "https://pacs/dicomweb/studies/1/series/2/instances/3/bulkdata/7FE00010"}
    assert metadata["00091010"]["BulkDataURI"].endswith("/bulkdata/00091010")
    assert metadata["00091011"] == {"vr": "OB", "InlineBinary": "dGlueQ=="}
    assert metadata["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}
    assert metadata["00280008"]["Value"] == [3] and metadata["00083002"]["Value"] == ["1.2.840.10008.1.2.1"]
    assert "FFFCFFFC" not in metadata and not any(tag.startswith("0002") for tag in metadata)
    assert list(metadata) == sorted(metadata)

    assert read_bulk_data(data, 0x00091010) == ("OB", bytes(4000))
    with pytest.raises(NoSuchBulkData):
        read_bulk_data(data, 0x00100010)  # not binary
    with pytest.raises(NoSuchBulkData):
        read_bulk_data(data, 0x00420011)  # absent


def test_compressed_pixel_data_is_ob_in_the_metadata() -> None:
    ds = multi_frame()
    ds.compress(RLELossless)
    metadata = instance_metadata(file_bytes(ds), "u")
    assert metadata["7FE00010"] == {"vr": "OB", "BulkDataURI": "u/7FE00010"}
    assert metadata["00083002"]["Value"] == [RLELossless]
