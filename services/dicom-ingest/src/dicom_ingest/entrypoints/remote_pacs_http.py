"""Remote PACS over HTTP: register them, echo and query them, retrieve from and send to them as jobs.

Everything is the caller's organisation's: another organisation's remote PACS and jobs answer 404
exactly as unknown ones do.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydicom.dataset import Dataset

from dicom_ingest.adapters.remote_pacs import (
    JobNotFound,
    RemotePacsExists,
    RemotePacsNotFound,
    RemoteRefused,
    RemoteUnavailable,
)
from dicom_ingest.entrypoints.remote_pacs_models import (
    EchoView,
    FindRequest,
    FindResult,
    JobList,
    JobListQuery,
    JobPath,
    JobView,
    RemotePacsList,
    RemotePacsPath,
    RemotePacsRegistration,
    RemotePacsView,
    RetrieveRequest,
    SendRequest,
)
from dicom_ingest.service_layer.remote import NothingToSend, RemoteExchange, RemoteTimeout
from radcommon.auth import Principal, require_roles
from radcommon.contracts import RoleValues
from radcommon.openapi import operation, parse_body, parse_query
from radcommon.problems import BadGateway, Conflict, NotFound, Problem, UnprocessableContent

log = logging.getLogger(__name__)
exchange_key = web.AppKey("remote_exchange", RemoteExchange)
M = TypeVar("M", bound=BaseModel)

MANAGING = (RoleValues.ADMIN, RoleValues.MANAGER)
LISTING = (*MANAGING, RoleValues.TECHNICIAN)
#: Query and retrieve (priors for reading too); sending a study out is not a reader's call.
RETRIEVING = (*MANAGING, RoleValues.TECHNICIAN, RoleValues.RADIOLOGIST)
SENDING = LISTING
TAGS = ["remote PACS"]
#: Not returned in find results: the JSON is UTF-8 whatever the remote's character set was.
_LEFT_OUT = {0x00080005}


class GatewayTimeout(Problem):
    status_code, title = 504, "Gateway Timeout"


def add_routes(app: web.Application, exchange: RemoteExchange) -> None:
    app[exchange_key] = exchange
    app.router.add_get("/remote-pacs", list_remote_pacs)
    app.router.add_post("/remote-pacs", register_remote_pacs)
    app.router.add_get("/remote-pacs/jobs", list_jobs)
    app.router.add_get("/remote-pacs/jobs/{job_id}", get_job)
    app.router.add_delete("/remote-pacs/{remote_pacs_id}", unregister_remote_pacs)
    app.router.add_post("/remote-pacs/{remote_pacs_id}/echo", echo_remote_pacs)
    app.router.add_post("/remote-pacs/{remote_pacs_id}/find", find_in_remote_pacs)
    app.router.add_post("/remote-pacs/{remote_pacs_id}/retrieve", retrieve_from_remote_pacs)
    app.router.add_post("/remote-pacs/{remote_pacs_id}/send", send_to_remote_pacs)


@operation("The remote PACS of the caller's organisation", responses={200: RemotePacsList, 403: None},
           tags=TAGS, security=True)
async def list_remote_pacs(request: web.Request) -> web.Response:
    principal = require_roles(request, *LISTING)
    found = await request.app[exchange_key].registry.of_organization(principal.organization_id)
    return _json(RemotePacsList(items=[RemotePacsView.of(r) for r in found]))


@operation("Register a remote PACS for the caller's organisation", request=RemotePacsRegistration,
           responses={201: RemotePacsView, 403: None, 409: None}, tags=TAGS, security=True)
async def register_remote_pacs(request: web.Request) -> web.Response:
    """Its AE title at the address its host resolves to is also registered as a modality of the organisation
    (unless it is already), so the C-STORE sub-operations of a C-MOVE to Telerad are accepted and stored for the
    organisation; like any modality it may then also send to Telerad and query and retrieve the organisation's
    studies. 409 when the organisation has a remote PACS of that AE title, or another organisation receives
    from that AE title at that address; 422 when the host does not resolve."""
    principal = require_roles(request, *MANAGING)
    body = await parse_body(request, RemotePacsRegistration)
    try:
        remote = await request.app[exchange_key].register(
            principal.organization_id, ae_title=body.ae_title, host=body.host, port=body.port,
            description=body.description, calling_ae_title=body.calling_ae_title)
    except RemotePacsExists as error:
        raise Conflict(str(error)) from None
    except ValueError as error:
        raise UnprocessableContent(str(error)) from None
    _audit("remote PACS registered", principal, remote_pacs_id=str(remote.id), ae_title=remote.ae_title,
           host=remote.host, port=remote.port)
    return _json(RemotePacsView.of(remote), status=201)


@operation("Remove a remote PACS of the caller's organisation", path=RemotePacsPath,
           responses={204: None, 403: None, 404: None}, tags=TAGS, security=True)
async def unregister_remote_pacs(request: web.Request) -> web.Response:
    """The modality registered with it goes too; its jobs stay listed."""
    principal = require_roles(request, *MANAGING)
    remote_pacs_id = _path(request, RemotePacsPath).remote_pacs_id
    try:
        await request.app[exchange_key].unregister(principal.organization_id, remote_pacs_id)
    except RemotePacsNotFound:
        raise NotFound("no such remote PACS") from None
    _audit("remote PACS removed", principal, remote_pacs_id=str(remote_pacs_id))
    return web.Response(status=204)


@operation("C-ECHO a remote PACS", path=RemotePacsPath, responses={200: EchoView, 403: None, 404: None},
           tags=TAGS, security=True)
async def echo_remote_pacs(request: web.Request) -> web.Response:
    """200 whether or not it answered: `success` says, `detail` says why not."""
    principal = require_roles(request, *MANAGING)
    remote_pacs_id = _path(request, RemotePacsPath).remote_pacs_id
    try:
        result = await request.app[exchange_key].echo(principal.organization_id, remote_pacs_id)
    except RemotePacsNotFound:
        raise NotFound("no such remote PACS") from None
    return _json(EchoView(success=result.success, status=result.status, detail=result.detail,
                          elapsed_ms=result.elapsed_ms))


@operation("Query a remote PACS (C-FIND, Study Root)", path=RemotePacsPath, request=FindRequest,
           responses={200: FindResult, 403: None, 404: None, 502: None, 504: None}, tags=TAGS, security=True)
async def find_in_remote_pacs(request: web.Request) -> web.Response:
    """Matches in the DICOM JSON Model. 422 for keys that cannot go into a C-FIND identifier (unknown keyword,
    sequence, invalid UID, date or time, a SERIES or IMAGE query without the UIDs above it); 502 when the
    remote PACS refuses the association or the query; 504 when it does not answer within
    DICOM_INGEST_REMOTE_REQUEST_TIMEOUT_SECONDS."""
    principal = require_roles(request, *RETRIEVING)
    remote_pacs_id = _path(request, RemotePacsPath).remote_pacs_id
    body = await parse_body(request, FindRequest)
    try:
        answer = await request.app[exchange_key].find(principal.organization_id, remote_pacs_id, body.level,
                                                      body.keys, body.limit)
    except RemotePacsNotFound:
        raise NotFound("no such remote PACS") from None
    except ValueError as error:
        raise UnprocessableContent(str(error)) from None
    except (RemoteUnavailable, RemoteRefused) as error:
        raise BadGateway(f"the remote PACS: {error}") from None
    except RemoteTimeout as error:
        raise GatewayTimeout(str(error)) from None
    matches = await asyncio.to_thread(lambda: [dicom_json(match) for match in answer.matches])
    return _json(FindResult(matches=matches, truncated=answer.truncated))


@operation("Retrieve a study or series from a remote PACS (C-MOVE or C-GET), as a job", path=RemotePacsPath,
           request=RetrieveRequest, responses={202: JobView, 403: None, 404: None}, tags=TAGS, security=True)
async def retrieve_from_remote_pacs(request: web.Request) -> web.Response:
    """The instances are stored as if a modality of the organisation had sent them (same checks, index and
    study.received). Follow the job at GET /remote-pacs/jobs/{job_id}."""
    principal = require_roles(request, *RETRIEVING)
    remote_pacs_id = _path(request, RemotePacsPath).remote_pacs_id
    body = await parse_body(request, RetrieveRequest)
    try:
        job = await request.app[exchange_key].retrieve(principal.organization_id, principal.user_id, remote_pacs_id,
                                                       body.study_instance_uid, body.series_instance_uid, body.method)
    except RemotePacsNotFound:
        raise NotFound("no such remote PACS") from None
    _audit("remote PACS retrieval requested", principal, job_id=str(job.id), remote_pacs_id=str(remote_pacs_id),
           method=body.method.value)
    return _json(JobView.of(job), status=202)


@operation("Send a study or series to a remote PACS (C-STORE), as a job", path=RemotePacsPath,
           request=SendRequest, responses={202: JobView, 403: None, 404: None}, tags=TAGS, security=True)
async def send_to_remote_pacs(request: web.Request) -> web.Response:
    """Every instance of it the organisation holds, in its stored transfer syntax, decompressed only when the
    remote PACS accepts none of the compressed one. 404 when the organisation holds none."""
    principal = require_roles(request, *SENDING)
    remote_pacs_id = _path(request, RemotePacsPath).remote_pacs_id
    body = await parse_body(request, SendRequest)
    try:
        job = await request.app[exchange_key].send(principal.organization_id, principal.user_id, remote_pacs_id,
                                                   body.study_instance_uid, body.series_instance_uid)
    except RemotePacsNotFound:
        raise NotFound("no such remote PACS") from None
    except NothingToSend as error:
        raise NotFound(str(error)) from None
    except ValueError as error:
        raise UnprocessableContent(str(error)) from None
    _audit("remote PACS send requested", principal, job_id=str(job.id), remote_pacs_id=str(remote_pacs_id))
    return _json(JobView.of(job), status=202)


@operation("The organisation's latest remote PACS jobs", query=JobListQuery,
           responses={200: JobList, 403: None}, tags=TAGS, security=True)
async def list_jobs(request: web.Request) -> web.Response:
    principal = require_roles(request, *RETRIEVING)
    query = parse_query(request, JobListQuery)
    jobs = await request.app[exchange_key].jobs.recent(principal.organization_id, query.limit)
    return _json(JobList(items=[JobView.of(job) for job in jobs]))


@operation("A remote PACS job: its status, sub-operation counts and failures", path=JobPath,
           responses={200: JobView, 403: None, 404: None}, tags=TAGS, security=True)
async def get_job(request: web.Request) -> web.Response:
    principal = require_roles(request, *RETRIEVING)
    job_id = _path(request, JobPath).job_id
    try:
        job = await request.app[exchange_key].jobs.get(principal.organization_id, job_id)
    except JobNotFound:
        raise NotFound("no such job") from None
    return _json(JobView.of(job))


def dicom_json(dataset: Dataset) -> dict[str, Any]:
    """A C-FIND response identifier in the DICOM JSON Model (PS3.18 Annex F), without its character set."""
    kept = Dataset()
    for element in dataset:
        if int(element.tag) not in _LEFT_OUT and element.tag.element != 0:
            kept.add(element)
    document: dict[str, Any] = kept.to_json_dict(suppress_invalid_tags=True)
    return document


def _path(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate(dict(request.match_info))
    except ValidationError:
        raise NotFound("no such resource") from None


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)


def _audit(message: str, principal: Principal, **extra: Any) -> None:
    log.info(message, extra={**extra, "organization_id": str(principal.organization_id),
                             "user_id": str(principal.user_id)})
