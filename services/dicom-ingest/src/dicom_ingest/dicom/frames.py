"""Frames and bulk data of a stored instance, as WADO-RS sends them (PS3.18 §8.7.3.3, §10.4.1.1.4).

Native pixel data is cut into frames and sent as uncompressed Little Endian bytes (PS3.18 §8.7.3.3.1),
swapped from Big Endian when the file was stored so. Encapsulated pixel data is sent one compressed
frame at a time, without its item delimiters (PS3.18 §8.7.3.3.2; PS3.5 §A.4).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.encaps import get_frame
from pydicom.tag import Tag

from dicom_ingest.dicom.media_types import is_native
from dicom_ingest.dicom.rendering import number_of_frames

PIXEL_DATA = 0x7FE00010
FLOAT_PIXEL_DATA = 0x7FE00008
DOUBLE_FLOAT_PIXEL_DATA = 0x7FE00009
PIXEL_DATA_TAGS = frozenset({PIXEL_DATA, FLOAT_PIXEL_DATA, DOUBLE_FLOAT_PIXEL_DATA})
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
#: Binary VRs whose top-level values the metadata refers to by BulkDataURI (PS3.18 §F.2.7).
BULK_DATA_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW", "US or SS or OW"})
_WORD_SIZES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


class NoSuchFrame(LookupError):
    """The instance has no pixel data, or not that frame."""


class NoSuchBulkData(LookupError):
    """The instance has no top-level binary element with that tag."""


@dataclass(frozen=True)
class Frames:
    transfer_syntax_uid: str
    frames: list[bytes]


def parse_frame_list(text: str, limit: int = 10_000) -> list[int]:
    """``1,3,5`` into frame numbers (PS3.18 §8.3.4.3): positive, at most ``limit`` of them.

    Raises
    ------
    ValueError
        For anything else.
    """
    items = text.split(",")
    if not text or len(items) > limit or not all(i.strip().isdigit() and 0 < len(i.strip()) <= 9 for i in items):
        raise ValueError("frames are a comma-separated list of frame numbers from 1")
    numbers = [int(i) for i in items]
    if min(numbers) < 1:
        raise ValueError("frame numbers start at 1")
    return numbers


def read_frames(data: bytes, frame_numbers: list[int] | None = None) -> Frames:
    """Frames ``frame_numbers`` (1-based; all when None) of the PS3.10 file ``data``.

    Raises
    ------
    NoSuchFrame
        Without pixel data, or for a frame number past the last frame.
    """
    dataset = dcmread(io.BytesIO(data))
    transfer_syntax = str(dataset.file_meta.TransferSyntaxUID)
    if "PixelData" not in dataset:
        raise NoSuchFrame("the instance has no pixel data")
    count = number_of_frames(dataset)
    wanted = frame_numbers or list(range(1, count + 1))
    if max(wanted) > count:
        raise NoSuchFrame(f"the instance has {count} frame(s), not {max(wanted)}")
    if not is_native(transfer_syntax):
        extended = None
        if "ExtendedOffsetTable" in dataset and "ExtendedOffsetTableLengths" in dataset:
            extended = (dataset.ExtendedOffsetTable, dataset.ExtendedOffsetTableLengths)
        return Frames(transfer_syntax, [get_frame(dataset.PixelData, n - 1, number_of_frames=count,
                                                  extended_offsets=extended) for n in wanted])
    pixels = _little_endian(dataset, PIXEL_DATA, transfer_syntax)
    bits_per_frame = int(dataset.Rows) * int(dataset.Columns) * int(dataset.get("SamplesPerPixel", 1)) * \
        int(dataset.BitsAllocated)
    if bits_per_frame % 8 == 0:
        size = bits_per_frame // 8
        if len(pixels) < size * count:
            raise NoSuchFrame(f"the pixel data holds fewer than {count} frame(s)")
        return Frames(transfer_syntax, [pixels[(n - 1) * size:n * size] for n in wanted])
    bits = np.unpackbits(np.frombuffer(pixels, dtype=np.uint8), bitorder="little")  # 1-bit frames (PS3.5 §8.1.1)
    return Frames(transfer_syntax, [np.packbits(bits[(n - 1) * bits_per_frame:n * bits_per_frame],
                                                bitorder="little").tobytes() for n in wanted])


def read_bulk_data(data: bytes, tag: int) -> tuple[str, bytes]:
    """The VR and Little Endian value of a top-level binary element other than pixel data.

    Raises
    ------
    NoSuchBulkData
        When the instance has no such element, or it is not binary.
    """
    dataset = dcmread(io.BytesIO(data))
    element = dataset.get(Tag(tag))
    if element is None or element.VR not in BULK_DATA_VRS or element.value is None:
        raise NoSuchBulkData(f"the instance has no bulk data element {tag:08X}")
    return str(element.VR), _little_endian(dataset, tag, str(dataset.file_meta.TransferSyntaxUID))


def _little_endian(dataset: Any, tag: int, transfer_syntax: str) -> bytes:
    element = dataset[Tag(tag)]
    value = bytes(element.value)
    if tag == PIXEL_DATA:
        allocated = int(dataset.get("BitsAllocated", 8))
        size = allocated // 8 if allocated in (16, 32, 64) else 1
    else:
        size = _WORD_SIZES.get(str(element.VR), 1)
    if transfer_syntax != EXPLICIT_VR_BIG_ENDIAN or size == 1 or len(value) % size:
        return value
    return np.frombuffer(value, dtype=f">u{size}").astype(f"<u{size}").tobytes()
