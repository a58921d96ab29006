"""A small DICOM-aware mutation fuzzer with a fixed seed: the same inputs on every run, no atheris needed.

The regression tests run a few thousand of its mutants through the targets; atheris explores further
(``make fuzz``). Mutations are those that find bugs in a length-prefixed format: bit flips and
interesting integers anywhere, but mostly on the tags, VRs and 16/32-bit lengths of element and item
headers (undefined length, zero, one past the end, huge), cuts, duplicated and deleted spans, and
splices of two seeds.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence

INTERESTING_16 = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)
INTERESTING_32 = (0, 1, 2, 4, 8, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
VRS = (b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OD", b"OF",
       b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI", b"UL", b"UN",
       b"UR", b"US", b"UT", b"UV", b"XX", b"\0\0")
#: Where headers are: items and delimiters (FFFE,E0xx) in either byte order, and explicit VRs.
HEADER = re.compile(rb"\xfe\xff[\x00\x0d\xdd]\xe0|\xff\xfe\xe0[\x00\x0d\xdd]|(?<=[\x00-\xff]{4})[A-Z]{2}")


def mutants(seeds: Sequence[bytes], count: int, seed: int = 4, *, keep: int = 0) -> Iterator[bytes]:
    """``count`` mutants of ``seeds``, the same ones for the same arguments; the first ``keep`` bytes of
    each (a selector) are mutated only by the whole-input operations, rarely."""
    rng = random.Random(seed)
    for _ in range(count):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
            data = _mutate(rng, data, seeds, keep)
        yield bytes(data)


def _mutate(rng: random.Random, data: bytearray, seeds: Sequence[bytes], keep: int) -> bytearray:
    if len(data) <= keep + 1 or rng.random() < 0.03:
        return _splice(rng, data, seeds) if rng.random() < 0.5 else bytearray(rng.randbytes(rng.randrange(64)))
    operation = rng.choices(
        (_header, _header, _header, _header, _flip, _integer, _cut, _delete, _duplicate, _insert, _splice, _selector),
        k=1)[0]
    return operation(rng, data, seeds, keep) if operation is not _splice else _splice(rng, data, seeds)


def _position(rng: random.Random, data: bytearray, keep: int, width: int = 1) -> int:
    return rng.randrange(keep, max(keep + 1, len(data) - width + 1))


def _header(rng: random.Random, data: bytearray, seeds: Sequence[bytes], keep: int) -> bytearray:
    headers = [m.start() for m in HEADER.finditer(data, keep)]
    if not headers:
        return _integer(rng, data, seeds, keep)
    at = rng.choice(headers)
    is_vr = data[at:at + 2].isalpha()
    choice = rng.random()
    if is_vr and choice < 0.3:
        data[at:at + 2] = rng.choice(VRS)
    elif is_vr and choice < 0.6:  # the 16-bit length after a short VR
        value = rng.choice((*INTERESTING_16, len(data) - at, rng.randrange(0x10000)))
        data[at + 2:at + 4] = (value & 0xFFFF).to_bytes(2, rng.choice(("little", "big")))
    else:  # the 32-bit length of an item or of a long VR's element
        start = at + 4
        value = rng.choice((*INTERESTING_32, len(data) - start, len(data) - start - 4, rng.randrange(2**32)))
        data[start:start + 4] = (value & 0xFFFFFFFF).to_bytes(4, rng.choice(("little", "big")))
    return data


def _flip(rng: random.Random, data: bytearray, seeds: Sequence[bytes], keep: int) -> bytearray:
    at = _position(rng, data, keep)
    if at < len(data):
        data[at] ^= 1 << rng.randrange(8)
    return data


def _integer(rng: random.Random, data: bytearray, seeds: Sequence[bytes], keep: int) -> bytearray:
    width = rng.choice((1, 2, 4))
    at = _position(rng, data, keep, width)
    values = {1: (0, 0x1B, 0x5C, 0x7F, 0x80, 0xFF), 2: INTERESTING_16, 4: INTERESTING_32}[width]
    data[at:at + width] = rng.choice(values).to_bytes(width, rng.choice(("little", "big")))
    return data


def _cut(rng: random.Random, data: bytearray, seeds: Sequence[bytes], keep: int) -> bytearray:
    return data[:_position(rng, data, keep)]


def _delete(rng: random.Random, data: bytearray, seeds: Sequence[bytes], keep: int) -> bytearray:
    at = _position(rng, data, keep)
    del data[at:at + rng.choice((1, 2, 4, 8, rng.randrange(1, 256)))]
    return data


def _duplicate(rng: random.Random, data: bytearray, seeds: Sequence[bytes], keep: int) -> bytearray:
    at = _position(rng, data, keep)
    span = data[at:at + rng.choice((2, 4, 8, 12, rng.randrange(1, 512)))]
    data[at:at] = span * rng.choice((1, 1, 2, 16))
    return data


def _insert(rng: random.Random, data: bytearray, seeds: Sequence[bytes], keep: int) -> bytearray:
    at = _position(rng, data, keep)
    data[at:at] = rng.choice((b"\0", b"\x1b", b"\\", b"\xfe\xff\x00\xe0\xff\xff\xff\xff", b"\xfe\xff\x0d\xe0\0\0\0\0",
                              b"\xfe\xff\xdd\xe0\0\0\0\0", rng.randbytes(rng.randrange(1, 16))))
    return data


def _splice(rng: random.Random, data: bytearray, seeds: Sequence[bytes]) -> bytearray:
    other = rng.choice(seeds)
    return data[:rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1):]


def _selector(rng: random.Random, data: bytearray, seeds: Sequence[bytes], keep: int) -> bytearray:
    if keep:
        data[0] = rng.randrange(256)
    return data
