"""The DICOM file format of PS3.10 §7.1: a 128-byte preamble, ``DICM``, then File Meta Information.

STOW-RS sends each instance as a PS3.10 file (``application/dicom``, PS3.18 §8.7.3.1). This reads
the File Meta Information strictly — group 0002, Explicit VR Little Endian, no sequences, no
undefined lengths — and says where the data set begins, so that the data set itself can go through
the same walk as a C-STORE data set (:mod:`dicom_ingest.dicom.walk`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PREAMBLE_LENGTH = 128
PREFIX = b"DICM"
FILE_META_GROUP = 0x0002
#: VRs with two reserved bytes and a 32-bit length in Explicit VR (PS3.5 Table 7.1-1).
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
MAX_FILE_META_LENGTH = 64 * 1024
MEDIA_STORAGE_SOP_CLASS_UID = 0x00020002
MEDIA_STORAGE_SOP_INSTANCE_UID = 0x00020003
TRANSFER_SYNTAX_UID = 0x00020010


class MalformedFile(ValueError):
    """The bytes are not a DICOM file in the format of PS3.10 §7.1."""


@dataclass(frozen=True)
class FileMeta:
    """What the File Meta Information says (PS3.10 §7.1, Table 7.1-1) and where the data set starts."""

    dataset_offset: int
    transfer_syntax_uid: str
    media_storage_sop_class_uid: str
    media_storage_sop_instance_uid: str


def read_file_meta(data: bytes | memoryview) -> FileMeta:
    """Read the preamble, prefix and File Meta Information of a PS3.10 file.

    Raises
    ------
    MalformedFile
        If the ``DICM`` prefix is missing, an element runs past the end or past
        :data:`MAX_FILE_META_LENGTH`, an element has no valid VR, a sequence or undefined length
        appears, or the Transfer Syntax UID is absent.
    """
    view = memoryview(data)
    if len(view) < PREAMBLE_LENGTH + len(PREFIX) or bytes(view[PREAMBLE_LENGTH:PREAMBLE_LENGTH + 4]) != PREFIX:
        raise MalformedFile("no DICM prefix after a 128-byte preamble (PS3.10 §7.1)")
    offset = PREAMBLE_LENGTH + len(PREFIX)
    limit = min(len(view), offset + MAX_FILE_META_LENGTH)
    values: dict[int, bytes] = {}
    while offset + 8 <= len(view):
        group, element = struct.unpack_from("<HH", view, offset)
        if group != FILE_META_GROUP:
            break
        vr = bytes(view[offset + 4:offset + 6])
        if vr in LONG_VRS:
            if vr == b"SQ":
                raise MalformedFile("a sequence in the File Meta Information")
            if offset + 12 > limit:
                raise MalformedFile("File Meta Information element header runs past its end")
            (length,) = struct.unpack_from("<L", view, offset + 8)
            start = offset + 12
        elif len(vr) == 2 and vr.isalpha() and vr.isupper():
            (length,) = struct.unpack_from("<H", view, offset + 6)
            start = offset + 8
        else:
            raise MalformedFile(f"File Meta Information element (0002,{element:04X}) has no valid VR")
        if length == 0xFFFFFFFF or start + length > limit:
            raise MalformedFile(f"File Meta Information element (0002,{element:04X}) runs past its end")
        values[(group << 16) | element] = bytes(view[start:start + length])
        offset = start + length
    transfer_syntax = _uid(values.get(TRANSFER_SYNTAX_UID, b""))
    if not transfer_syntax:
        raise MalformedFile("the File Meta Information has no Transfer Syntax UID (0002,0010)")
    return FileMeta(offset, transfer_syntax, _uid(values.get(MEDIA_STORAGE_SOP_CLASS_UID, b"")),
                    _uid(values.get(MEDIA_STORAGE_SOP_INSTANCE_UID, b"")))


def _uid(value: bytes) -> str:
    return value.decode("ascii", "replace").rstrip("\x00 ").strip()
