"""Rendered images and thumbnails (PS3.18 §10.4.1.1.5, §10.4.1.1.6) and WADO-URI (PS3.18 chapter 9).

Decoding and rendering run in the DICOMweb thread pool, never on the event loop.
"""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from dicom_ingest.adapters.storage import InstanceStorage
from dicom_ingest.dicom.attributes import UID_PATTERN
from dicom_ingest.dicom.media_types import (
    DICOM,
    JPEG,
    PNG,
    instance_representation,
    parse_accept,
    rendered_media_type,
)
from dicom_ingest.dicom.rendering import (
    DEFAULT_QUALITY,
    THUMBNAIL_SIZE,
    FrameOutOfRange,
    NotRenderable,
    RenderOptions,
    Viewport,
    Window,
    parse_region,
    parse_viewport,
    parse_window,
    render,
)
from dicom_ingest.dicomweb_views import StoredInstance, stored_instances
from dicom_ingest.entrypoints.dicomweb_common import DicomWeb, NotAcceptable, accepted, instances_of, reader
from dicom_ingest.entrypoints.dicomweb_models import (
    FramePath,
    InstancePath,
    RenderedQuery,
    SeriesPath,
    StudyPath,
    WadoUriQuery,
)
from radcommon.openapi import operation
from radcommon.problems import BadRequest, NotFound

Model = TypeVar("Model", bound=BaseModel)
_IMAGE = {200: None, 400: None, 403: None, 404: None, 406: None}
_RENDERED = ("image/jpeg (default) or image/png, by Accept or the accept parameter. Greyscale: Modality LUT, then "
             "the window asked for or the instance's first Window Center/Width (else its VOI LUT, else the full "
             "range); MONOCHROME1 inverted. 406 when the instance has no image to render.")


def add_routes(app: web.Application, study: str, series: str, instance: str) -> None:
    app.router.add_get(instance + "/rendered", rendered_instance)
    app.router.add_get(instance + "/frames/{frames}/rendered", rendered_frame)
    app.router.add_get(instance + "/thumbnail", instance_thumbnail)
    app.router.add_get(instance + "/frames/{frames}/thumbnail", frame_thumbnail)
    app.router.add_get(series + "/thumbnail", series_thumbnail)
    app.router.add_get(study + "/thumbnail", study_thumbnail)
    app.router.add_get("/dicomweb/wado", wado_uri)


@operation("Render an instance (first frame)", path=InstancePath, query=RenderedQuery, responses=_IMAGE,
           tags=["dicomweb"], security=True, description=_RENDERED)
async def rendered_instance(request: web.Request) -> web.Response:
    dicomweb, [instance] = await instances_of(request, series=True, instance=True)
    return await _render(request, dicomweb, [instance], 1, thumbnail=False)


@operation("Render one frame of an instance", path=FramePath, query=RenderedQuery, responses=_IMAGE,
           tags=["dicomweb"], security=True, description=_RENDERED)
async def rendered_frame(request: web.Request) -> web.Response:
    dicomweb, [instance] = await instances_of(request, series=True, instance=True)
    return await _render(request, dicomweb, [instance], _frame_number(request), thumbnail=False)


@operation("Thumbnail of an instance", path=InstancePath, query=RenderedQuery, responses=_IMAGE,
           tags=["dicomweb"], security=True, description=f"Rendered into {THUMBNAIL_SIZE}x{THUMBNAIL_SIZE} unless "
                                                          "a viewport is given.")
async def instance_thumbnail(request: web.Request) -> web.Response:
    dicomweb, [instance] = await instances_of(request, series=True, instance=True)
    return await _render(request, dicomweb, [instance], 1, thumbnail=True)


@operation("Thumbnail of one frame", path=FramePath, query=RenderedQuery, responses=_IMAGE, tags=["dicomweb"],
           security=True)
async def frame_thumbnail(request: web.Request) -> web.Response:
    dicomweb, [instance] = await instances_of(request, series=True, instance=True)
    return await _render(request, dicomweb, [instance], _frame_number(request), thumbnail=True)


@operation("Thumbnail of a series", path=SeriesPath, query=RenderedQuery, responses=_IMAGE, tags=["dicomweb"],
           security=True, description="The thumbnail of its middle instance (by instance number).")
async def series_thumbnail(request: web.Request) -> web.Response:
    dicomweb, found = await instances_of(request, series=True)
    return await _render(request, dicomweb, _representatives(found), 1, thumbnail=True)


@operation("Thumbnail of a study", path=StudyPath, query=RenderedQuery, responses=_IMAGE, tags=["dicomweb"],
           security=True, description="The thumbnail of the middle instance of its first series with an image.")
async def study_thumbnail(request: web.Request) -> web.Response:
    dicomweb, found = await instances_of(request)
    return await _render(request, dicomweb, _representatives(found), 1, thumbnail=True)


def _representatives(found: list[StoredInstance], limit: int = 4) -> list[StoredInstance]:
    """The middle instance of each series, in series order, for the first few series."""
    by_series: dict[str, list[StoredInstance]] = {}
    for instance in found:
        by_series.setdefault(instance.series_instance_uid, []).append(instance)
    return [members[len(members) // 2] for members in list(by_series.values())[:limit]]


def _frame_number(request: web.Request) -> int:
    text = request.match_info["frames"]
    if not text.isdigit() or len(text) > 9 or int(text) < 1:
        raise BadRequest("a rendered frame is one frame number, from 1")
    return int(text)


async def _render(request: web.Request, dicomweb: DicomWeb, candidates: list[StoredInstance], frame: int, *,
                  thumbnail: bool) -> web.Response:
    query = _validated(RenderedQuery, request)
    ranges = parse_accept(query.accept) if query.accept else accepted(request)
    media_type = rendered_media_type(ranges)
    if media_type is None:
        raise NotAcceptable("rendered images are image/jpeg or image/png")
    try:
        window = parse_window(query.window) if query.window else None
        viewport = parse_viewport(query.viewport) if query.viewport else None
    except ValueError as error:
        raise BadRequest(str(error)) from None
    if thumbnail and viewport is None:
        viewport = Viewport(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    options = RenderOptions(media_type, window, viewport, quality=query.quality or DEFAULT_QUALITY)
    return await _rendered_response(dicomweb, candidates, frame, options)


async def _rendered_response(dicomweb: DicomWeb, candidates: list[StoredInstance], frame: int,
                             options: RenderOptions) -> web.Response:
    reason = "nothing to render"
    for instance in candidates:  # the first one with an image wins
        try:
            body = await dicomweb.blocking(_render_stored, dicomweb.storage, instance.storage_key, frame, options)
        except NotRenderable as error:
            reason = str(error)
            continue
        except FrameOutOfRange as error:
            raise NotFound(str(error)) from None
        except ValueError as error:
            raise BadRequest(str(error)) from None
        return web.Response(body=body, content_type=options.media_type)
    raise NotAcceptable(f"no rendered representation: {reason}")


def _render_stored(storage: InstanceStorage, key: str, frame: int, options: RenderOptions) -> bytes:
    return render(storage.get(key), frame, options)


def _validated(model: type[Model], request: web.Request) -> Model:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as error:
        problems = [{"loc": ["query", *e["loc"]], "msg": e["msg"]}
                    for e in error.errors(include_url=False, include_input=False)[:20]]
        raise BadRequest("the query parameters are not valid", errors=problems) from None


# --- WADO-URI (PS3.18 chapter 9) -----------------------------------------------------------------------------------

@operation("Retrieve an instance by WADO-URI", query=WadoUriQuery, responses=_IMAGE, tags=["dicomweb"],
           security=True, description="requestType=WADO&studyUID=…&seriesUID=…&objectUID=…: the file "
                                      "(contentType=application/dicom, as stored) or a rendered image/jpeg (the "
                                      "default) or image/png, with frameNumber, rows, columns, region, windowCenter, "
                                      "windowWidth and imageQuality.")
async def wado_uri(request: web.Request) -> web.Response:
    dicomweb, organization_id = reader(request)
    query = _validated(WadoUriQuery, request)
    if (query.anonymize or "").lower() == "yes":
        raise BadRequest("anonymize=yes is not supported")
    uids = (query.studyUID, query.seriesUID, query.objectUID)
    if not all(len(u) <= 64 and UID_PATTERN.fullmatch(u) for u in uids):
        raise NotFound("no such object")
    found = await stored_instances(dicomweb.db, organization_id, *uids)
    if not found:
        raise NotFound("no such object")
    if query.contentType is None:  # an image when there is one to render, else the file (PS3.18 §9.1.2.2.2)
        try:
            return await _wado_rendered(dicomweb, found[0], JPEG, query)
        except NotAcceptable:
            return await _wado_file(dicomweb, found[0], query.transferSyntax)
    wanted = [t.strip().lower() for t in query.contentType.split(",") if t.strip()]
    for content_type in wanted:
        if content_type == DICOM:
            return await _wado_file(dicomweb, found[0], query.transferSyntax)
        if content_type in (JPEG, PNG):
            return await _wado_rendered(dicomweb, found[0], content_type, query)
    raise NotAcceptable("contentType is application/dicom, image/jpeg or image/png")


async def _wado_file(dicomweb: DicomWeb, instance: StoredInstance, transfer_syntax: str | None) -> web.Response:
    ranges = parse_accept(f"{DICOM}; transfer-syntax={transfer_syntax}" if transfer_syntax else DICOM)
    if instance_representation(ranges, {instance.transfer_syntax_uid}, single_part=True) is None:
        raise NotAcceptable(f"the object is stored in {instance.transfer_syntax_uid} and is not transcoded")
    body = await dicomweb.blocking(dicomweb.storage.get, instance.storage_key)
    return web.Response(body=body, content_type=DICOM)


async def _wado_rendered(dicomweb: DicomWeb, instance: StoredInstance, media_type: str,
                         query: WadoUriQuery) -> web.Response:
    if (query.windowCenter is None) != (query.windowWidth is None):
        raise BadRequest("windowCenter and windowWidth go together")
    try:
        window = None if query.windowCenter is None or query.windowWidth is None else \
            Window(query.windowCenter, query.windowWidth)
        region = parse_region(query.region) if query.region else None
    except ValueError as error:
        raise BadRequest(str(error)) from None
    viewport = None
    if query.rows or query.columns:
        viewport = Viewport(query.columns or 4096, query.rows or 4096)
    options = RenderOptions(media_type, window, viewport, region, query.imageQuality or DEFAULT_QUALITY)
    return await _rendered_response(dicomweb, [instance], query.frameNumber or 1, options)
