import asyncio
from unittest import mock

import pytest
from aiohttp import StreamReader

from dicom_ingest.dicom.media_types import (
    DICOM,
    JPEG,
    MULTIPART_RELATED,
    OCTET_STREAM,
    PNG,
    FrameRepresentation,
    MediaRange,
    accepts_dicom_json,
    frame_representation,
    instance_representation,
    parse_accept,
    parse_media_type,
    rendered_media_type,
)
from dicom_ingest.dicom.multipart import (
    Limits,
    MalformedMultipart,
    PayloadTooLarge,
    UnsupportedMediaType,
    closing_delimiter,
    multipart_content_type,
    part_head,
    part_tail,
    receive_parts,
)

EVRLE, JPEG_BASELINE, J2K = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90"
LIMITS = Limits(max_part_bytes=1000, max_request_bytes=2500, max_parts=5)


def stream(body: bytes, chunk: int = 7) -> StreamReader:
    chunk = chunk if len(body) < 100_000 else 64 * 1024
    reader = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    for start in range(0, len(body), chunk):
        reader.feed_data(body[start:start + chunk])
    reader.feed_eof()
    return reader


def multipart(parts: list[tuple[str | None, bytes]], boundary: str = "b0und4ry") -> bytes:
    body = b""
    for content_type, data in parts:
        head = part_head(boundary, content_type) if content_type else f"--{boundary}\r\n\r\n".encode()
        body += head + data + part_tail()
    return body + closing_delimiter(boundary)


def headers(content_type: str = f'{MULTIPART_RELATED}; type="{DICOM}"; boundary=b0und4ry') -> dict[str, str]:
    return {"Content-Type": content_type}


async def receive(body: bytes, content_type: str | None = None, limits: Limits = LIMITS) -> list[bytes]:
    spooled = await receive_parts(headers() if content_type is None else headers(content_type), stream(body), DICOM,
                                  limits)
    try:
        return [spooled.read(part) for part in spooled.parts]
    finally:
        spooled.close()


# --- reading requests -----------------------------------------------------------------------------------------------

async def test_parts_come_back_byte_for_byte_whatever_they_contain() -> None:
    payloads = [b"DICM" + bytes(range(256)), b"x--b0und4ry is not a delimiter", b"\r\n--b0und4r\r\n", b""]
    body = multipart([(DICOM, payloads[0]), (None, payloads[1]), (f"{DICOM}; transfer-syntax={EVRLE}", payloads[2]),
                      (DICOM, payloads[3])])
    assert await receive(body) == payloads


async def test_a_quoted_boundary_and_an_unstated_part_type_are_accepted() -> None:
    body = multipart([(None, b"one")], boundary="with space")
    assert await receive(body, f'{MULTIPART_RELATED}; boundary="with space"') == [b"one"]


@pytest.mark.parametrize("content_type", [
    "application/json", f'{MULTIPART_RELATED}; type="application/dicom+json"; boundary=b0und4ry',
    "multipart/form-data; boundary=b0und4ry", "not a media type", ""])
async def test_another_media_type_is_unsupported(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        await receive(multipart([(DICOM, b"x")]), content_type)


async def test_a_part_of_another_media_type_is_unsupported() -> None:
    with pytest.raises(UnsupportedMediaType):
        await receive(multipart([(DICOM, b"x"), ("application/pdf", b"%PDF")]))


@pytest.mark.parametrize("body", [
    b"", b"no boundary anywhere", multipart([(DICOM, b"x")])[:-16],  # no closing delimiter
    b"--b0und4ry\r\nnot a header line\r\n\r\nx\r\n--b0und4ry--\r\n", closing_delimiter("b0und4ry")])
async def test_a_malformed_body_is_refused_whole(body: bytes) -> None:
    with pytest.raises(MalformedMultipart):
        await receive(body)


async def test_a_content_type_without_boundary_is_malformed() -> None:
    with pytest.raises(MalformedMultipart):
        await receive(multipart([(DICOM, b"x")]), f'{MULTIPART_RELATED}; type="{DICOM}"')


async def test_caps_per_part_per_request_and_on_the_number_of_parts() -> None:
    assert len(await receive(multipart([(DICOM, b"x" * 1000)]))) == 1
    with pytest.raises(PayloadTooLarge, match="part"):
        await receive(multipart([(DICOM, b"x" * 1001)]))
    with pytest.raises(PayloadTooLarge, match="together"):
        await receive(multipart([(DICOM, b"x" * 900)] * 3))
    with pytest.raises(PayloadTooLarge, match="parts"):
        await receive(multipart([(DICOM, b"x")] * 6))
    with pytest.raises(PayloadTooLarge):
        await receive_parts({**headers(), "Content-Length": "2501"}, stream(b""), DICOM, LIMITS)


async def test_a_request_larger_than_the_in_memory_spool_reads_back_intact() -> None:
    big = bytes(range(256)) * (40 * 1024)  # 10 MiB, past the 8 MiB kept in memory
    limits = Limits(32 * 1024**2, 64 * 1024**2, 10)
    assert await receive(multipart([(DICOM, big), (DICOM, b"after")]), limits=limits) == [big, b"after"]


def test_response_parts_are_delimited_as_rfc_2046_says() -> None:
    content_type = multipart_content_type(OCTET_STREAM, "xyz", EVRLE)
    assert content_type == f'multipart/related; type="{OCTET_STREAM}"; transfer-syntax={EVRLE}; boundary=xyz'
    assert part_head("xyz", JPEG, {"Content-Location": "/a"}) == \
        b"--xyz\r\nContent-Type: image/jpeg\r\nContent-Location: /a\r\n\r\n"
    assert closing_delimiter("xyz") == b"--xyz--\r\n"


# --- Accept negotiation ----------------------------------------------------------------------------------------------

def test_accept_is_parsed_with_quoted_parameters_and_quality_order() -> None:
    ranges = parse_accept(f'image/png;q=0.5, {MULTIPART_RELATED}; type="{OCTET_STREAM}"; transfer-syntax=*, '
                          f'bogus, text/html;q=0, Image/JPEG;q=0.9')
    assert [r.media_type for r in ranges] == [MULTIPART_RELATED, JPEG, PNG]
    assert (ranges[0].part_type, ranges[0].transfer_syntax) == (OCTET_STREAM, "*")
    assert parse_accept(None) == parse_accept("  ") == [MediaRange("*/*")]
    assert parse_media_type('a/b; x="1,2;3"').parameters == {"x": "1,2;3"}
    with pytest.raises(ValueError):
        parse_media_type("application")


def test_frames_stored_uncompressed_go_as_octet_stream_in_explicit_vr_little_endian() -> None:
    octets = FrameRepresentation(OCTET_STREAM, EVRLE)
    for accept in (None, "*/*", MULTIPART_RELATED, f'{MULTIPART_RELATED}; type="{OCTET_STREAM}"',
                   f'{MULTIPART_RELATED}; type={OCTET_STREAM}; transfer-syntax=*',
                   f'{MULTIPART_RELATED}; type={OCTET_STREAM}; transfer-syntax={EVRLE}'):
        assert frame_representation(parse_accept(accept), "1.2.840.10008.1.2") == octets, accept
    for accept in (f'{MULTIPART_RELATED}; type="{JPEG}"', OCTET_STREAM, "image/*", "text/plain",
                   f'{MULTIPART_RELATED}; type={OCTET_STREAM}; transfer-syntax={JPEG_BASELINE}'):
        assert frame_representation(parse_accept(accept), EVRLE) is None, accept


def test_compressed_frames_go_as_stored_never_transcoded() -> None:
    jpeg = FrameRepresentation(JPEG, JPEG_BASELINE)
    for accept in ("*/*", MULTIPART_RELATED, f'{MULTIPART_RELATED}; type="image/*"',
                   f'{MULTIPART_RELATED}; type="{JPEG}"; transfer-syntax={JPEG_BASELINE}',
                   f'{MULTIPART_RELATED}; type="{OCTET_STREAM}", {MULTIPART_RELATED}; type="{JPEG}"'):
        assert frame_representation(parse_accept(accept), JPEG_BASELINE) == jpeg, accept
    assert frame_representation(parse_accept(f'{MULTIPART_RELATED}; type={OCTET_STREAM}; transfer-syntax=*'),
                                J2K) == FrameRepresentation(OCTET_STREAM, J2K)
    assert frame_representation(parse_accept(f'{MULTIPART_RELATED}; type="image/jp2"'), J2K).media_type == "image/jp2"
    for accept in (f'{MULTIPART_RELATED}; type="{OCTET_STREAM}"', f'{MULTIPART_RELATED}; type="{PNG}"',
                   f'{MULTIPART_RELATED}; type="{JPEG}"; transfer-syntax=1.2.840.10008.1.2.4.70'):
        assert frame_representation(parse_accept(accept), JPEG_BASELINE) is None, accept
    assert frame_representation(parse_accept("*/*"), "1.2.840.10008.1.2.4.100") is None  # MPEG-2 video


def test_instances_go_as_stored_and_a_single_one_may_go_bare() -> None:
    assert instance_representation(parse_accept(None), {EVRLE}, single_part=False) == MULTIPART_RELATED
    assert instance_representation(parse_accept(f'{MULTIPART_RELATED}; type="{DICOM}"; transfer-syntax=*'),
                                   {EVRLE, JPEG_BASELINE}, single_part=False) == MULTIPART_RELATED
    assert instance_representation(parse_accept(DICOM), {EVRLE}, single_part=True) == DICOM
    assert instance_representation(parse_accept(DICOM), {EVRLE}, single_part=False) is None
    assert instance_representation(parse_accept(f'{MULTIPART_RELATED}; type="{DICOM}"; transfer-syntax={EVRLE}'),
                                   {JPEG_BASELINE}, single_part=False) is None
    assert instance_representation(parse_accept(f'{MULTIPART_RELATED}; type="{JPEG}"'), {EVRLE},
                                   single_part=True) is None


def test_json_and_rendered_media_types() -> None:
    assert accepts_dicom_json(parse_accept(None)) and accepts_dicom_json(parse_accept("application/json"))
    assert not accepts_dicom_json(parse_accept("application/dicom+xml"))
    assert rendered_media_type(parse_accept(None)) == JPEG
    assert rendered_media_type(parse_accept("image/png, image/jpeg")) == PNG
    assert rendered_media_type(parse_accept("image/gif, image/*")) == JPEG
    assert rendered_media_type(parse_accept("image/gif")) is None
