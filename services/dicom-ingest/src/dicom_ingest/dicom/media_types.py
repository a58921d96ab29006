"""Media types of DICOMweb: Accept negotiation and the media type of each transfer syntax (PS3.18 §8.7).

An Accept header (RFC 9110 §12.5.1) is read into :class:`MediaRange` values, best first. DICOMweb adds
two parameters to it: ``type`` on ``multipart/related`` names the media type of every part, and
``transfer-syntax`` the Transfer Syntax UID of the content (PS3.18 §8.7.3.5.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
OCTET_STREAM = "application/octet-stream"
MULTIPART_RELATED = "multipart/related"
JPEG = "image/jpeg"
PNG = "image/png"
ANY = "*/*"

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
#: Transfer syntaxes whose pixel data is native (not encapsulated): PS3.5 §A.1, A.2, A.3, A.5.
NATIVE_TRANSFER_SYNTAXES = frozenset({"1.2.840.10008.1.2", EXPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2.2",
                                      "1.2.840.10008.1.2.1.99"})
#: Media type of a compressed frame by Transfer Syntax UID (PS3.18 Table 8.7.3-5).
COMPRESSED_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": JPEG, "1.2.840.10008.1.2.4.51": JPEG, "1.2.840.10008.1.2.4.57": JPEG,
    "1.2.840.10008.1.2.4.70": JPEG,
    "1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2", "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx", "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc", "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.4.110": "image/jxl", "1.2.840.10008.1.2.4.111": "image/jxl",
    "1.2.840.10008.1.2.4.112": "image/jxl",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
MAX_ACCEPTED_RANGES = 32


@dataclass(frozen=True)
class MediaRange:
    """One element of an Accept header: ``type/subtype`` (possibly with ``*``), parameters, quality."""

    media_type: str
    parameters: dict[str, str] = field(default_factory=dict)
    quality: float = 1.0

    @property
    def transfer_syntax(self) -> str | None:
        return self.parameters.get("transfer-syntax")

    @property
    def part_type(self) -> str | None:
        """The ``type`` parameter of ``multipart/related``, lower case."""
        value = self.parameters.get("type")
        return value.lower() if value else None

    def matches(self, media_type: str) -> bool:
        """Whether this range covers the concrete ``media_type`` (``image/*`` covers ``image/png``)."""
        wanted, _, wanted_sub = self.media_type.partition("/")
        kind, _, sub = media_type.lower().partition("/")
        return wanted == "*" or (wanted == kind and wanted_sub in ("*", sub))


def parse_media_type(text: str) -> MediaRange:
    """One media type with its parameters (RFC 9110 §8.3.1); quoted values are unquoted.

    Raises
    ------
    ValueError
        When it is not ``type/subtype``.
    """
    head, *rest = _split(text, ";")
    media_type = head.strip().lower()
    kind, slash, sub = media_type.partition("/")
    if not slash or not kind or not sub or not _token(kind) or not _token(sub):
        raise ValueError(f"not a media type: {text[:100]!r}")
    parameters: dict[str, str] = {}
    for item in rest:
        name, equals, value = item.strip().partition("=")
        if not item.strip():
            continue
        if not equals or not _token(name.strip()):
            raise ValueError(f"malformed media type parameter: {item[:100]!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"')
        parameters[name.strip().lower()] = value
    return MediaRange(media_type, parameters)


def parse_accept(header: str | None) -> list[MediaRange]:
    """The ranges of an Accept header, best first (ties keep their order); absent or empty means ``*/*``.

    A range with ``q=0`` is left out; an element that is not a media range is ignored, as RFC 9110
    lets a server do. More than :data:`MAX_ACCEPTED_RANGES` elements are cut off.
    """
    if header is None or not header.strip():
        return [MediaRange(ANY)]
    ranges = []
    for element in _split(header, ",")[:MAX_ACCEPTED_RANGES]:
        if not element.strip():
            continue
        try:
            parsed = parse_media_type(element)
        except ValueError:
            continue
        parameters = dict(parsed.parameters)
        try:
            quality = min(1.0, max(0.0, float(parameters.pop("q", "1"))))
        except ValueError:
            quality = 1.0
        if quality > 0:
            ranges.append(MediaRange(parsed.media_type, parameters, quality))
    return sorted(ranges, key=lambda r: -r.quality)


def media_type_of(transfer_syntax_uid: str) -> str | None:
    """The media type a frame encoded in this transfer syntax is sent as; None for video and unknown ones."""
    if transfer_syntax_uid in NATIVE_TRANSFER_SYNTAXES:
        return OCTET_STREAM
    return COMPRESSED_MEDIA_TYPES.get(transfer_syntax_uid)


def is_native(transfer_syntax_uid: str) -> bool:
    """Whether pixel data in this transfer syntax is native, not encapsulated (PS3.5 §8.1, §8.2)."""
    return transfer_syntax_uid in NATIVE_TRANSFER_SYNTAXES


def _token(text: str) -> bool:
    return bool(text) and all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in text)


def _split(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


@dataclass(frozen=True)
class FrameRepresentation:
    """How frames are sent: the parts' media type and the transfer syntax their bytes are in."""

    media_type: str
    transfer_syntax_uid: str

    @property
    def content_type(self) -> str:
        return f"{self.media_type}; transfer-syntax={self.transfer_syntax_uid}"


def frame_representation(ranges: list[MediaRange], stored: str) -> FrameRepresentation | None:
    """The first acceptable way to send frames stored in transfer syntax ``stored``; None: 406.

    Native frames go as ``application/octet-stream`` in Explicit VR Little Endian. Compressed frames
    are never transcoded: they go as stored, as their own media type (``image/jpeg``...) or — when
    the client asks for ``application/octet-stream`` with ``transfer-syntax=*`` or that very
    syntax — labelled octet-stream (PS3.18 §8.7.3.3, §8.7.3.5.2). Without a transfer-syntax
    parameter octet-stream means Explicit VR Little Endian, which compressed frames cannot satisfy.
    """
    native = is_native(stored)
    compressed_type = None if native else COMPRESSED_MEDIA_TYPES.get(stored)
    default = FrameRepresentation(OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN) if native else \
        FrameRepresentation(compressed_type, stored) if compressed_type else None
    for media_range in ranges:
        if media_range.media_type == ANY:
            if default is not None:
                return default
            continue
        if media_range.media_type not in (MULTIPART_RELATED, "multipart/*"):
            continue  # frames always go as multipart/related
        part_type, syntax = media_range.part_type or ANY, media_range.transfer_syntax
        if part_type == ANY:
            if default is not None and syntax in (None, "*", default.transfer_syntax_uid):
                return default
        elif part_type == OCTET_STREAM:
            if native and syntax in (None, "*", EXPLICIT_VR_LITTLE_ENDIAN):
                return FrameRepresentation(OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN)
            if not native and syntax in ("*", stored):
                return FrameRepresentation(OCTET_STREAM, stored)
        elif compressed_type and MediaRange(part_type).matches(compressed_type) and syntax in (None, "*", stored):
            return FrameRepresentation(compressed_type, stored)
    return None


def instance_representation(ranges: list[MediaRange], stored: set[str], *, single_part: bool) -> str | None:
    """How to send whole instances: ``multipart/related`` of ``application/dicom`` parts, or (for one
    instance, when ``single_part``) a bare ``application/dicom`` body; None: 406.

    Instances are sent byte for byte as they were stored, never transcoded: a transfer-syntax
    parameter must be ``*`` or the stored one; without it the stored one is sent too (PS3.18
    §8.7.3.5.2 would make that Explicit VR Little Endian; see the README).
    """
    for media_range in ranges:
        syntax = media_range.transfer_syntax
        if syntax not in (None, "*") and stored != {syntax}:
            continue
        if media_range.media_type == ANY:
            return MULTIPART_RELATED
        if media_range.media_type in (MULTIPART_RELATED, "multipart/*") and \
                (media_range.part_type or DICOM) in (DICOM, ANY, "application/*"):
            return MULTIPART_RELATED
        if single_part and media_range.media_type in (DICOM, "application/*"):
            return DICOM
    return None


def accepts_dicom_json(ranges: list[MediaRange]) -> bool:
    return any(r.matches(DICOM_JSON) or r.media_type == "application/json" for r in ranges)


def rendered_media_type(ranges: list[MediaRange]) -> str | None:
    """image/jpeg unless PNG is asked for first (PS3.18 §8.7.4); None: 406."""
    for media_range in ranges:
        if media_range.media_type == PNG:
            return PNG
        if media_range.matches(JPEG):
            return JPEG
    return None
