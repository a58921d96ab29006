"""WADO-RS frames and bulk data (PS3.18 §10.4.1.1.3, §10.4.1.1.4): pixel data without the data set."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable

from aiohttp import web

from dicom_ingest.adapters.storage import InstanceStorage
from dicom_ingest.dicom.frames import (
    PIXEL_DATA,
    Frames,
    NoSuchBulkData,
    NoSuchFrame,
    parse_frame_list,
    read_bulk_data,
    read_frames,
)
from dicom_ingest.dicom.media_types import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    OCTET_STREAM,
    FrameRepresentation,
    MediaRange,
    frame_representation,
    is_native,
)
from dicom_ingest.entrypoints.dicomweb_common import NotAcceptable, accepted, instances_of, stream_multipart
from dicom_ingest.entrypoints.dicomweb_models import BulkDataPath, FramesPath
from radcommon.openapi import operation
from radcommon.problems import BadRequest, NotFound

_FRAMES = ("multipart/related, one part per frame. Native pixel data: type=\"application/octet-stream\", Explicit VR "
           "Little Endian. Compressed pixel data is sent as stored, never transcoded: as its own media type "
           "(image/jpeg, image/jls, image/jp2, image/jphc, image/dicom-rle...) or as application/octet-stream when "
           "asked with transfer-syntax=* or the stored one; anything else is 406.")


def add_routes(app: web.Application, instance: str) -> None:
    app.router.add_get(instance + "/frames/{frames}", retrieve_frames)
    app.router.add_get(instance + "/bulkdata/{tag}", retrieve_bulk_data)


@operation("Retrieve frames of an instance (WADO-RS)", path=FramesPath,
           responses={200: None, 400: None, 403: None, 404: None, 406: None}, tags=["dicomweb"], security=True,
           description=_FRAMES)
async def retrieve_frames(request: web.Request) -> web.StreamResponse:
    dicomweb, [instance] = await instances_of(request, series=True, instance=True)
    try:
        numbers = parse_frame_list(request.match_info["frames"])
    except ValueError as error:
        raise BadRequest(str(error)) from None
    representation = _representation(accepted(request), instance.transfer_syntax_uid)
    frames = await _frames(dicomweb.blocking(_read_frames, dicomweb.storage, instance.storage_key, numbers))
    return await stream_multipart(request, representation.media_type, _parts(representation, frames.frames))


@operation("Retrieve bulk data of an instance (WADO-RS)", path=BulkDataPath,
           responses={200: None, 403: None, 404: None, 406: None}, tags=["dicomweb"], security=True,
           description="The value of a top-level binary attribute that the metadata gives as a BulkDataURI. "
                       "Pixel data (7FE00010) as for frames: native pixel data as one octet-stream part, "
                       "compressed pixel data one part per frame. Other values: one application/octet-stream "
                       "part, Little Endian.")
async def retrieve_bulk_data(request: web.Request) -> web.StreamResponse:
    dicomweb, [instance] = await instances_of(request, series=True, instance=True)
    tag_text = request.match_info["tag"]
    if len(tag_text) != 8 or not all(c in "0123456789abcdefABCDEF" for c in tag_text):
        raise NotFound("no such bulk data")
    tag = int(tag_text, 16)
    ranges = accepted(request)
    if tag == PIXEL_DATA:
        representation = _representation(ranges, instance.transfer_syntax_uid)
        frames = await _frames(dicomweb.blocking(_read_frames, dicomweb.storage, instance.storage_key, None))
        chunks = [b"".join(frames.frames)] if is_native(frames.transfer_syntax_uid) else frames.frames
        return await stream_multipart(request, representation.media_type, _parts(representation, chunks))
    octets = frame_representation(ranges, EXPLICIT_VR_LITTLE_ENDIAN)
    if octets is None or octets.media_type != OCTET_STREAM:
        raise NotAcceptable("bulk data is multipart/related; type=\"application/octet-stream\"")
    try:
        _, value = await dicomweb.blocking(_read_bulk_data, dicomweb.storage, instance.storage_key, tag)
    except NoSuchBulkData as error:
        raise NotFound(str(error)) from None
    return await stream_multipart(request, OCTET_STREAM, _parts(octets, [value]))


def _representation(ranges: list[MediaRange], transfer_syntax: str) -> FrameRepresentation:
    representation = frame_representation(ranges, transfer_syntax)
    if representation is None:
        raise NotAcceptable(f"the frames are stored in transfer syntax {transfer_syntax} and are not transcoded")
    return representation


async def _frames(reading: Awaitable[Frames]) -> Frames:
    try:
        return await reading
    except NoSuchFrame as error:
        raise NotFound(str(error)) from None


async def _parts(representation: FrameRepresentation, chunks: list[bytes]) -> AsyncIterator[tuple[str, bytes]]:
    for chunk in chunks:
        yield representation.content_type, chunk


def _read_frames(storage: InstanceStorage, key: str, numbers: list[int] | None) -> Frames:
    return read_frames(storage.get(key), numbers)


def _read_bulk_data(storage: InstanceStorage, key: str, tag: int) -> tuple[str, bytes]:
    return read_bulk_data(storage.get(key), tag)
