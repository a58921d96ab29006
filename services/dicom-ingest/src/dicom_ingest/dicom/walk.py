"""A strict structural walk over an encoded DICOM data set (PS3.5 §7).

pydicom reads a truncated data set without complaint, and parsing every element just to index an
instance costs more than storing it. This walk checks that every element, item and fragment fits
inside the bytes received — so a truncated or corrupt stream is rejected before it is stored — and
returns the raw values of the few top-level elements the index needs, without decoding anything
else.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Collection

UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_DELIMITATION = 0xFFFEE00D
SEQUENCE_DELIMITATION = 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
#: VRs whose explicit-VR header has two reserved bytes and a 32-bit length (PS3.5 Table 7.1-1).
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
MAX_DEPTH = 32
MAX_INFLATED_BYTES = 2 * 1024**3

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"


class MalformedDataset(ValueError):
    """The bytes are not a well-formed data set in the transfer syntax they were sent in."""


def inflate(data: bytes, limit: int = MAX_INFLATED_BYTES) -> bytes:
    """Undo Deflated Explicit VR Little Endian (PS3.5 §A.5), refusing decompression bombs.

    The stream must end where the data ends: a stream cut short would otherwise inflate to a shorter
    data set that may still walk cleanly. One trailing NUL is allowed, the padding that senders add to
    a stream of odd length.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit)
    except zlib.error as error:
        raise MalformedDataset(f"deflated data set does not inflate: {error}") from None
    if inflater.unconsumed_tail:
        raise MalformedDataset(f"deflated data set inflates past {limit} bytes")
    if not inflater.eof:
        raise MalformedDataset(f"deflated data set is cut short or inflates past {limit} bytes")
    if inflater.unused_data not in (b"", b"\0"):
        raise MalformedDataset(f"{len(inflater.unused_data)} bytes after the end of the deflated data set")
    return out


def top_level_values(data: bytes, transfer_syntax_uid: str, wanted: Collection[int]) -> dict[int, bytes]:
    """Walk ``data`` completely and return the raw values of the ``wanted`` top-level tags.

    Parameters
    ----------
    data : bytes
        The data set without preamble or file meta information, as a C-STORE carries it.
    transfer_syntax_uid : str
        The transfer syntax it is encoded in; compressed pixel data is walked as fragments.
    wanted : collection of int
        Tags as ``0xggggeeee``; sequences among them are not returned.

    Raises
    ------
    MalformedDataset
        If any length runs past the end of the data, tags go backwards, or nesting is too deep.
    """
    if transfer_syntax_uid == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        data = inflate(data)
    walker = _Walker(memoryview(data), explicit=transfer_syntax_uid != IMPLICIT_VR_LITTLE_ENDIAN,
                     little=transfer_syntax_uid != EXPLICIT_VR_BIG_ENDIAN, wanted=frozenset(wanted))
    end = walker.dataset(0, len(data), depth=0, until_delimiter=False)
    if end != len(data):
        raise MalformedDataset(f"{len(data) - end} bytes after the end of the data set")
    return walker.found


class _Walker:
    def __init__(self, data: memoryview, *, explicit: bool, little: bool, wanted: frozenset[int]) -> None:
        self.data = data
        self.explicit = explicit
        self.order = "<" if little else ">"
        self.wanted = wanted
        self.found: dict[int, bytes] = {}

    def _unpack(self, fmt: str, offset: int, end: int) -> tuple[int, ...]:
        size = struct.calcsize(self.order + fmt)
        if offset + size > end:
            raise MalformedDataset(f"element header at byte {offset} runs past the end")
        return struct.unpack_from(self.order + fmt, self.data, offset)

    def _tag(self, offset: int, end: int) -> int:
        group, element = self._unpack("HH", offset, end)
        return (group << 16) | element

    def dataset(self, offset: int, end: int, depth: int, until_delimiter: bool) -> int:
        """Walk elements from ``offset``; return the offset just past the data set (or its delimiter)."""
        if depth > MAX_DEPTH:
            raise MalformedDataset(f"sequences nested deeper than {MAX_DEPTH}")
        previous = -1
        while offset < end:
            tag = self._tag(offset, end)
            if tag == ITEM_DELIMITATION and until_delimiter:
                return offset + 8
            if tag >> 16 == 0xFFFE:  # items and delimiters belong to sequences, never to a data set
                raise MalformedDataset(f"unexpected item or delimiter {tag:08X} at byte {offset}")
            if tag <= previous:
                raise MalformedDataset(f"tag {tag:08X} out of order at byte {offset}")
            previous = tag
            vr, length, offset = self._header(tag, offset, end)
            if length == UNDEFINED_LENGTH:
                if tag == PIXEL_DATA and vr != b"SQ":
                    offset = self._fragments(offset, end)
                else:
                    offset = self._items(offset, end, depth + 1, implicit_content=vr == b"UN")
                continue
            if offset + length > end:
                raise MalformedDataset(f"element {tag:08X} of {length} bytes runs past the end")
            if vr == b"SQ":
                self._items(offset, offset + length, depth + 1, defined_length=True)
            elif depth == 0 and tag in self.wanted:
                self.found[tag] = bytes(self.data[offset:offset + length])
            offset += length
        if until_delimiter:
            raise MalformedDataset("item of undefined length has no delimiter")
        return offset

    def _header(self, tag: int, offset: int, end: int) -> tuple[bytes | None, int, int]:
        if not self.explicit:
            (length,) = self._unpack("L", offset + 4, end)
            return None, length, offset + 8
        vr = bytes(self.data[offset + 4:offset + 6])
        if vr in LONG_VRS:
            (length,) = self._unpack("L", offset + 8, end)
            return vr, length, offset + 12
        if not vr.isalpha() or not vr.isupper():
            raise MalformedDataset(f"element {tag:08X} has no valid VR at byte {offset}")
        (length,) = self._unpack("H", offset + 6, end)
        return vr, length, offset + 8

    def _items(self, offset: int, end: int, depth: int, *, implicit_content: bool = False,
               defined_length: bool = False) -> int:
        """The items of a sequence (PS3.5 §7.5): up to ``end`` if its length is defined, else to its delimiter."""
        saved = self.explicit
        if implicit_content:  # UN of undefined length is encoded as Implicit VR Little Endian (PS3.5 §6.2.2)
            self.explicit = False
        try:
            while not (defined_length and offset == end):
                tag = self._tag(offset, end)
                (length,) = self._unpack("L", offset + 4, end)
                offset += 8
                if tag == SEQUENCE_DELIMITATION and not defined_length:
                    return offset
                if tag != ITEM:
                    raise MalformedDataset(f"expected an item, found {tag:08X} at byte {offset - 8}")
                if length == UNDEFINED_LENGTH:
                    offset = self.dataset(offset, end, depth, until_delimiter=True)
                elif offset + length > end:
                    raise MalformedDataset(f"item of {length} bytes runs past the end")
                else:
                    self.dataset(offset, offset + length, depth, until_delimiter=False)
                    offset += length
            return offset
        finally:
            self.explicit = saved

    def _fragments(self, offset: int, end: int) -> int:
        """Encapsulated pixel data: a basic offset table and fragments, each an item (PS3.5 §A.4)."""
        while True:
            tag = self._tag(offset, end)
            (length,) = self._unpack("L", offset + 4, end)
            offset += 8
            if tag == SEQUENCE_DELIMITATION:
                return offset
            if tag != ITEM or length == UNDEFINED_LENGTH or offset + length > end:
                raise MalformedDataset(f"broken pixel data fragment at byte {offset - 8}")
            offset += length
