"""Multipart/related payloads of DICOMweb (PS3.18 §8.6.1.2, RFC 2387, RFC 2046 §5.1).

Requests are read with aiohttp's :class:`~aiohttp.MultipartReader`; every part is spooled into one
temporary file (in memory while small) under a cap per part, per request and on the number of parts,
so that a request is read completely — and refused completely when it is malformed or too large —
before any instance in it is stored. Responses are written part by part with :func:`part_head` and
:func:`closing_delimiter`.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import IO

from aiohttp import BodyPartReader, MultipartReader, StreamReader

from dicom_ingest.dicom.media_types import MULTIPART_RELATED, parse_media_type

CHUNK_BYTES = 256 * 1024
#: How much of a request stays in memory before the spool moves to a temporary file.
IN_MEMORY_BYTES = 8 * 1024**2


class MalformedMultipart(ValueError):
    """The body is not the multipart payload its Content-Type announces (HTTP 400)."""


class UnsupportedMediaType(ValueError):
    """The request or one of its parts is not of a media type the resource accepts (HTTP 415)."""


class PayloadTooLarge(ValueError):
    """A part, the request, or the number of parts is over its cap (HTTP 413)."""


@dataclass(frozen=True)
class Limits:
    max_part_bytes: int
    max_request_bytes: int
    max_parts: int


@dataclass(frozen=True)
class SpooledPart:
    offset: int
    length: int
    content_type: str


@dataclass
class SpooledParts:
    """The parts of one request, kept in one spooled temporary file; close it when done."""

    spool: IO[bytes]
    parts: list[SpooledPart] = field(default_factory=list)

    def read(self, part: SpooledPart) -> bytes:
        """The part's bytes (blocking: the spool may be on disk)."""
        self.spool.seek(part.offset)
        return self.spool.read(part.length)

    def close(self) -> None:
        self.spool.close()


def new_boundary() -> str:
    return f"telerad-{uuid.uuid4().hex}"


def multipart_content_type(part_type: str, boundary: str, transfer_syntax: str | None = None) -> str:
    """The Content-Type of a multipart/related payload whose parts are all ``part_type``."""
    syntax = f"; transfer-syntax={transfer_syntax}" if transfer_syntax else ""
    return f'{MULTIPART_RELATED}; type="{part_type}"{syntax}; boundary={boundary}'


def part_head(boundary: str, content_type: str, headers: Mapping[str, str] | None = None) -> bytes:
    """The delimiter and header block that open one body part (RFC 2046 §5.1.1)."""
    lines = [f"--{boundary}", f"Content-Type: {content_type}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def part_tail() -> bytes:
    return b"\r\n"


def closing_delimiter(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode("ascii")


def check_content_type(content_type: str | None, part_type: str) -> None:
    """Refuse (415) a request that is not ``multipart/related`` of ``part_type`` parts, and (400) one
    without a boundary. A missing ``type`` parameter is taken to mean ``part_type``."""
    try:
        parsed = parse_media_type(content_type or "")
    except ValueError:
        raise UnsupportedMediaType(f"the request must be {MULTIPART_RELATED}; type=\"{part_type}\"") from None
    if parsed.media_type != MULTIPART_RELATED or (parsed.part_type or part_type) != part_type:
        raise UnsupportedMediaType(f"the request must be {MULTIPART_RELATED}; type=\"{part_type}\", "
                                   f"not {parsed.media_type} of {parsed.part_type or 'unstated parts'}")
    if not parsed.parameters.get("boundary"):
        raise MalformedMultipart("the multipart Content-Type has no boundary")


async def receive_parts(headers: Mapping[str, str], content: StreamReader, part_type: str, limits: Limits,
                        executor: Executor | None = None) -> SpooledParts:
    """Read every part of a multipart/related request into a spool, enforcing ``limits``.

    Raises
    ------
    UnsupportedMediaType
        For a request or a part of another media type.
    MalformedMultipart
        For a missing boundary, a part without a closing delimiter, broken part headers, or no part.
    PayloadTooLarge
        When the declared Content-Length, a part, all parts together or their number is over a cap.
    """
    check_content_type(headers.get("Content-Type"), part_type)
    declared = headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_request_bytes:
        raise PayloadTooLarge(f"the request is larger than {limits.max_request_bytes} bytes")
    spooled = SpooledParts(tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_BYTES))
    try:
        try:
            reader = MultipartReader(headers, content)
        except ValueError as error:  # e.g. a boundary longer than RFC 2046's 70 characters
            raise MalformedMultipart(f"malformed multipart request: {error}") from None
        await _spool(reader, spooled, part_type, limits, executor)
    except BaseException:
        spooled.close()
        raise
    return spooled


async def _spool(reader: MultipartReader, spooled: SpooledParts, part_type: str, limits: Limits,
                 executor: Executor | None) -> None:
    loop = asyncio.get_running_loop()
    total = 0
    while True:
        try:
            part = await reader.next()
        except Exception as error:  # aiohttp says ValueError, AssertionError or BadHttpMessage, by case
            raise MalformedMultipart(f"malformed multipart body: {error}") from None
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise UnsupportedMediaType("nested multipart bodies are not accepted")
        content_type = _part_type(part, part_type)
        if len(spooled.parts) >= limits.max_parts:
            raise PayloadTooLarge(f"more than {limits.max_parts} parts")
        offset, length = total, 0
        buffer = bytearray()
        while True:
            try:
                chunk = await part.read_chunk(CHUNK_BYTES)
            except Exception as error:
                raise MalformedMultipart(f"malformed multipart body: {error}") from None
            if not chunk:
                break
            length += len(chunk)
            if length > limits.max_part_bytes:
                raise PayloadTooLarge(f"a part is larger than {limits.max_part_bytes} bytes")
            if total + length > limits.max_request_bytes:
                raise PayloadTooLarge(f"the parts together are larger than {limits.max_request_bytes} bytes")
            buffer += chunk
            if len(buffer) >= IN_MEMORY_BYTES:  # the spool may be a file by now: write off the loop
                await loop.run_in_executor(executor, spooled.spool.write, bytes(buffer))
                buffer.clear()
        if buffer:
            await loop.run_in_executor(executor, spooled.spool.write, bytes(buffer))
        spooled.parts.append(SpooledPart(offset, length, content_type))
        total += length
    if not spooled.parts:
        raise MalformedMultipart("the multipart body has no parts")


def _part_type(part: BodyPartReader, part_type: str) -> str:
    declared = part.headers.get("Content-Type")
    if declared is None:
        return part_type  # RFC 2387: the root's type parameter says what the parts are
    try:
        media_type = parse_media_type(declared).media_type
    except ValueError:
        raise MalformedMultipart(f"a part has a malformed Content-Type: {declared[:100]!r}") from None
    if media_type != part_type:
        raise UnsupportedMediaType(f"a part is {media_type}; only {part_type} parts are accepted")
    return media_type
