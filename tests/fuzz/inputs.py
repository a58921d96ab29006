"""How a fuzzer's raw input becomes the arguments of the code under test (imports nothing of dicom-ingest,
so that the atheris harness can instrument dicom-ingest when it imports it later).

- ``read_instance``: one selector byte, then the data set as a C-STORE carries it. The low nibble picks
  the negotiated transfer syntax from :data:`TRANSFER_SYNTAXES` (modulo its length); bit 7 set passes the
  data set as a ``memoryview`` slice, as STOW-RS does, instead of ``bytes``.
- ``stow``: a whole PS3.10 file, as one part of a STOW-RS request carries it.
- ``multipart``: the request's Content-Type header value, a line feed, then the request body.
"""

from __future__ import annotations

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
TRANSFER_SYNTAXES = [
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
]
AS_MEMORYVIEW = 0x80
BOUNDARY = "fuzzb0undary"
DICOM = "application/dicom"
CONTENT_TYPE = f'multipart/related; type="{DICOM}"; boundary={BOUNDARY}'


def read_instance_arguments(data: bytes) -> tuple[bytes | memoryview, str]:
    """The data set and transfer syntax UID that ``data`` stands for."""
    if not data:
        return b"", EXPLICIT_VR_LITTLE_ENDIAN
    selector, data_set = data[0], data[1:]
    transfer_syntax = TRANSFER_SYNTAXES[(selector & 0x0F) % len(TRANSFER_SYNTAXES)]
    return (memoryview(data)[1:] if selector & AS_MEMORYVIEW else data_set), transfer_syntax


def multipart_arguments(data: bytes) -> tuple[str, bytes]:
    """The Content-Type header value and the body that ``data`` stands for."""
    header, _, body = data.partition(b"\n")
    return header.decode("latin-1").replace("\r", ""), body


def multipart_input(parts: list[bytes], *, part_type: str | None = DICOM, content_type: str = CONTENT_TYPE) -> bytes:
    """A ``multipart`` input: a STOW-RS request with ``parts`` (RFC 2046 §5.1.1)."""
    body = b""
    for part in parts:
        head = f"--{BOUNDARY}\r\n" + (f"Content-Type: {part_type}\r\n" if part_type else "") + "\r\n"
        body += head.encode("ascii") + part + b"\r\n"
    body += f"--{BOUNDARY}--\r\n".encode("ascii")
    return content_type.encode("latin-1") + b"\n" + body
