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
#: How many elements, items and fragments a deflated data set may hold: a base plus so many per byte
#: received. Uncompressed, each costs the sender 8 bytes or more; deflated, as little as 1/125 of a byte,
#: and 47 KB of empty items walked for 10 s. An SR of 5,000 measurements deflates to about 3.7 per byte.
DEFLATED_UNITS, DEFLATED_UNITS_PER_BYTE = 50_000, 8

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
        If any length runs past the end of the data, tags go backwards, nesting is too deep, or a
        deflated data set holds more elements and items than its size allows.
    """
    units = None
    if transfer_syntax_uid == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        units = DEFLATED_UNITS + DEFLATED_UNITS_PER_BYTE * len(data)
        data = inflate(data)
    walker = _Walker(memoryview(data), explicit=transfer_syntax_uid != IMPLICIT_VR_LITTLE_ENDIAN,
                     little=transfer_syntax_uid != EXPLICIT_VR_BIG_ENDIAN, wanted=frozenset(wanted), units=units)
    end = walker.dataset(0, len(data), depth=0, until_delimiter=False)
    if end != len(data):
        raise MalformedDataset(f"{len(data) - end} bytes after the end of the data set")
    return walker.found


class _Walker:
    def __init__(self, data: memoryview, *, explicit: bool, little: bool, wanted: frozenset[int],
                 units: int | None = None) -> None:
        self.data = data
        self.explicit = explicit
        order = "<" if little else ">"
        self.unpack_tag = struct.Struct(order + "HH").unpack_from
        self.unpack_tag_and_length = struct.Struct(order + "HHL").unpack_from  # items, delimiters, fragments
        self.unpack_short_length = struct.Struct(order + "H").unpack_from
        self.unpack_long_length = struct.Struct(order + "L").unpack_from
        self.wanted = wanted
        self.found: dict[int, bytes] = {}
        self.units = units if units is not None else len(data)  # never reached: each costs 8 bytes or more
        self.units_left = self.units

    def _visit(self, offset: int, end: int, size: int) -> None:
        """Count one element, item or fragment against the budget; its first ``size`` bytes must be there."""
        self.units_left -= 1
        if self.units_left < 0:
            raise MalformedDataset(f"more than {self.units} elements and items by byte {offset}: "
                                   "too many for the size of the deflated data set")
        if offset + size > end:
            raise MalformedDataset(f"element header at byte {offset} runs past the end")

    def _tag_and_length(self, offset: int, end: int) -> tuple[int, int]:
        """An item, a delimiter or a fragment: tag and 32-bit length, in any transfer syntax (PS3.5 §7.5)."""
        self._visit(offset, end, 8)
        group, element, length = self.unpack_tag_and_length(self.data, offset)
        return (group << 16) | element, length

    def dataset(self, offset: int, end: int, depth: int, until_delimiter: bool) -> int:
        """Walk elements from ``offset``; return the offset just past the data set (or its delimiter)."""
        if depth > MAX_DEPTH:
            raise MalformedDataset(f"sequences nested deeper than {MAX_DEPTH}")
        previous = -1
        while offset < end:
            self._visit(offset, end, 4)
            group, element = self.unpack_tag(self.data, offset)
            tag = (group << 16) | element
            if tag == ITEM_DELIMITATION and until_delimiter:
                if offset + 8 > end:  # its length, zero, must be there too (PS3.5 §7.5.2)
                    raise MalformedDataset(f"item delimiter at byte {offset} runs past the end")
                return offset + 8
            if group == 0xFFFE:  # items and delimiters belong to sequences, never to a data set
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
        if offset + 8 > end:
            raise MalformedDataset(f"element header at byte {offset} runs past the end")
        if not self.explicit:
            return None, self.unpack_long_length(self.data, offset + 4)[0], offset + 8
        vr = bytes(self.data[offset + 4:offset + 6])
        if vr in LONG_VRS:
            if offset + 12 > end:
                raise MalformedDataset(f"element header at byte {offset} runs past the end")
            return vr, self.unpack_long_length(self.data, offset + 8)[0], offset + 12
        if not vr.isalpha() or not vr.isupper():
            raise MalformedDataset(f"element {tag:08X} has no valid VR at byte {offset}")
        return vr, self.unpack_short_length(self.data, offset + 6)[0], offset + 8

    def _items(self, offset: int, end: int, depth: int, *, implicit_content: bool = False,
               defined_length: bool = False) -> int:
        """The items of a sequence (PS3.5 §7.5): up to ``end`` if its length is defined, else to its delimiter."""
        saved = self.explicit
        if implicit_content:  # UN of undefined length is encoded as Implicit VR Little Endian (PS3.5 §6.2.2)
            self.explicit = False
        try:
            while not (defined_length and offset == end):
                tag, length = self._tag_and_length(offset, end)
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
            tag, length = self._tag_and_length(offset, end)
            offset += 8
            if tag == SEQUENCE_DELIMITATION:
                return offset
            if tag != ITEM or length == UNDEFINED_LENGTH or offset + length > end:
                raise MalformedDataset(f"broken pixel data fragment at byte {offset - 8}")
            offset += length
