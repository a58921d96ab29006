"""DICOMweb (PS3.18): STOW-RS and WADO-RS retrieve and metadata; frames, bulk data and rendered
images are in ``dicomweb_frames`` and ``dicomweb_rendered``, QIDO-RS in ``dicomweb_qido``. The gateway
serves all of it under ``/dicomweb``, the same paths as here. Everything is scoped to the organisation of
the caller's token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from aiohttp import web

from dicom_ingest.adapters.storage import InstanceStorage
from dicom_ingest.config import DicomIngestSettings
from dicom_ingest.dicom.dicom_json import instance_metadata
from dicom_ingest.dicom.media_types import (
    DICOM,
    DICOM_JSON,
    accepts_dicom_json,
    instance_representation,
)
from dicom_ingest.dicom.multipart import (
    Limits,
    MalformedMultipart,
    PayloadTooLarge,
    UnsupportedMediaType,
    receive_parts,
)
from dicom_ingest.dicomweb_views import StoredInstance
from dicom_ingest.domain.model import Discarder, Indexer
from dicom_ingest.entrypoints import dicomweb_frames, dicomweb_qido, dicomweb_rendered
from dicom_ingest.entrypoints.dicomweb_common import (
    WRITERS,
    ContentTooLarge,
    DicomWeb,
    NotAcceptable,
    UnsupportedMediaTypeProblem,
    accepted,
    dicomweb_key,
    executor,
    instances_of,
    stream_multipart,
    uid,
)
from dicom_ingest.entrypoints.dicomweb_models import InstancePath, SeriesPath, StudyPath
from dicom_ingest.service_layer.stow import (
    StowPorts,
    StowResult,
    response_status,
    store_instance,
    store_instances_response,
)
from radcommon.auth import require_roles
from radcommon.db import Database
from radcommon.openapi import operation
from radcommon.problems import BadRequest

STUDIES = "/dicomweb/studies"
STUDY = STUDIES + "/{study}"
SERIES = STUDY + "/series/{series}"
INSTANCE = SERIES + "/instances/{instance}"
READ = {200: None, 403: None, 404: None, 406: None}


def add_routes(app: web.Application, *, db: Database, storage: InstanceStorage, index: Indexer,
               discard_if_unreferenced: Discarder, settings: DicomIngestSettings, base_url: str) -> None:
    pool = executor(settings.dicomweb_threads)
    app[dicomweb_key] = DicomWeb(
        db=db, storage=storage, stow=StowPorts(storage, index, discard_if_unreferenced, pool), executor=pool,
        base_url=base_url.rstrip("/"), max_part_bytes=settings.stow_max_part_bytes,
        max_request_bytes=settings.stow_max_request_bytes, max_parts=settings.stow_max_parts)

    async def shut_down(_: web.Application) -> None:
        pool.shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(shut_down)
    app.router.add_post(STUDIES, store_instances)
    app.router.add_post(STUDY, store_study_instances)
    for path, handler in ((STUDY, retrieve_study), (SERIES, retrieve_series), (INSTANCE, retrieve_instance),
                          (STUDY + "/metadata", study_metadata), (SERIES + "/metadata", series_metadata),
                          (INSTANCE + "/metadata", instance_metadata_route)):
        app.router.add_get(path, handler)
    dicomweb_frames.add_routes(app, INSTANCE)
    dicomweb_rendered.add_routes(app, STUDY, SERIES, INSTANCE)
    dicomweb_qido.add_routes(app, db, STUDIES)


# --- STOW-RS (PS3.18 §10.5) ---------------------------------------------------------------------------------------

_STOW = {200: None, 202: None, 400: None, 403: None, 406: None, 413: None, 415: None}
_STOW_DESCRIPTION = (
    "The body is multipart/related; type=\"application/dicom\", one PS3.10 file per part. Each instance is checked, "
    "stored and indexed as a C-STORE would be, for the caller's organisation. The reply is application/dicom+json "
    "(Store Instances Response Module, PS3.18 Annex I): ReferencedSOPSequence for what was stored, FailedSOPSequence "
    "with a FailureReason for what was not. 200: all stored; 202: some; 409: none (same body). A malformed body "
    "(400), another media type (415) or one over the size caps (413) stores nothing.")


@operation("Store instances (STOW-RS)", responses=_STOW, tags=["dicomweb"], security=True,
           description=_STOW_DESCRIPTION)
async def store_instances(request: web.Request) -> web.Response:
    return await _store(request, None)


@operation("Store instances of one study (STOW-RS)", path=StudyPath, responses=_STOW, tags=["dicomweb"],
           security=True, description=_STOW_DESCRIPTION + " An instance of another study fails with 0xC409.")
async def store_study_instances(request: web.Request) -> web.Response:
    return await _store(request, uid(request, "study"))


async def _store(request: web.Request, study: str | None) -> web.Response:
    principal = require_roles(request, *WRITERS)
    dicomweb = request.app[dicomweb_key]
    if not accepts_dicom_json(accepted(request)):
        raise NotAcceptable("the STOW-RS response is application/dicom+json")
    limits = Limits(dicomweb.max_part_bytes, dicomweb.max_request_bytes, dicomweb.max_parts)
    try:
        spooled = await receive_parts(request.headers, request.content, DICOM, limits, dicomweb.executor)
    except UnsupportedMediaType as error:
        raise UnsupportedMediaTypeProblem(str(error)) from None
    except MalformedMultipart as error:
        raise BadRequest(str(error)) from None
    except PayloadTooLarge as error:
        raise ContentTooLarge(str(error)) from None
    results: list[StowResult] = []
    try:
        for part in spooled.parts:
            data = await dicomweb.blocking(spooled.read, part)
            results.append(await store_instance(data, principal.organization_id, dicomweb.stow, study))
    finally:
        spooled.close()
    document = store_instances_response(results, dicomweb.study_url, lambda r: dicomweb.instance_url(
        r.study_instance_uid, r.series_instance_uid, r.sop_instance_uid))
    return web.Response(body=json.dumps(document).encode(), status=response_status(results),
                        headers={"Content-Type": DICOM_JSON})


# --- WADO-RS retrieve (PS3.18 §10.4) -------------------------------------------------------------------------------

_RETRIEVE = ("The instances as stored, byte for byte: multipart/related; type=\"application/dicom\", one part each "
             "with its transfer-syntax. A transfer-syntax parameter other than * or the stored one is 406 (no "
             "transcoding).")


@operation("Retrieve a study's instances (WADO-RS)", path=StudyPath, responses=READ, tags=["dicomweb"],
           security=True, description=_RETRIEVE)
async def retrieve_study(request: web.Request) -> web.StreamResponse:
    return await _retrieve(request, *await instances_of(request))


@operation("Retrieve a series' instances (WADO-RS)", path=SeriesPath, responses=READ, tags=["dicomweb"],
           security=True, description=_RETRIEVE)
async def retrieve_series(request: web.Request) -> web.StreamResponse:
    return await _retrieve(request, *await instances_of(request, series=True))


@operation("Retrieve an instance (WADO-RS)", path=InstancePath, responses=READ, tags=["dicomweb"], security=True,
           description=_RETRIEVE + " Accept: application/dicom gets the file as a single-part body.")
async def retrieve_instance(request: web.Request) -> web.StreamResponse:
    return await _retrieve(request, *await instances_of(request, series=True, instance=True), single=True)


async def _retrieve(request: web.Request, dicomweb: DicomWeb, found: list[StoredInstance], *,
                    single: bool = False) -> web.StreamResponse:
    representation = instance_representation(accepted(request), {i.transfer_syntax_uid for i in found},
                                             single_part=single)
    if representation is None:
        raise NotAcceptable("instances are sent as stored: multipart/related; type=\"application/dicom\"")
    if representation == DICOM:
        body = await dicomweb.blocking(dicomweb.storage.get, found[0].storage_key)
        return web.Response(body=body, headers={"Content-Type": _dicom_type(found[0])})

    async def parts() -> AsyncIterator[tuple[str, bytes]]:
        for instance in found:
            yield _dicom_type(instance), await dicomweb.blocking(dicomweb.storage.get, instance.storage_key)

    return await stream_multipart(request, DICOM, parts())


def _dicom_type(instance: StoredInstance) -> str:
    return f"{DICOM}; transfer-syntax={instance.transfer_syntax_uid}"


# --- WADO-RS metadata (PS3.18 §10.4.1.1.2) -------------------------------------------------------------------------

_METADATA = ("application/dicom+json (PS3.18 Annex F): one object per instance; the pixel data and other large "
             "binary values are a BulkDataURI under …/bulkdata/{tag}.")


@operation("A study's metadata (WADO-RS)", path=StudyPath, responses=READ, tags=["dicomweb"], security=True,
           description=_METADATA)
async def study_metadata(request: web.Request) -> web.Response:
    return await _metadata(request, *await instances_of(request))


@operation("A series' metadata (WADO-RS)", path=SeriesPath, responses=READ, tags=["dicomweb"], security=True,
           description=_METADATA)
async def series_metadata(request: web.Request) -> web.Response:
    return await _metadata(request, *await instances_of(request, series=True))


@operation("An instance's metadata (WADO-RS)", path=InstancePath, responses=READ, tags=["dicomweb"],
           security=True, description=_METADATA, operation_id="instance_metadata")
async def instance_metadata_route(request: web.Request) -> web.Response:
    return await _metadata(request, *await instances_of(request, series=True, instance=True))


async def _metadata(request: web.Request, dicomweb: DicomWeb, found: list[StoredInstance]) -> web.Response:
    if not accepts_dicom_json(accepted(request)):
        raise NotAcceptable("metadata is application/dicom+json")
    documents = [await dicomweb.blocking(_metadata_of, dicomweb.storage, instance, dicomweb.instance_url(
        instance.study_instance_uid, instance.series_instance_uid, instance.sop_instance_uid) + "/bulkdata")
        for instance in found]
    return web.Response(body=json.dumps(documents).encode(), headers={"Content-Type": DICOM_JSON})


def _metadata_of(storage: InstanceStorage, instance: StoredInstance, bulk_data_url: str) -> dict[str, object]:
    return instance_metadata(storage.get(instance.storage_key), bulk_data_url)

