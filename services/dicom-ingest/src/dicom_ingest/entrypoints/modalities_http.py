"""The modality registry over HTTP: an organisation's admins and managers say which modalities may send."""

from __future__ import annotations

import logging

from aiohttp import web
from pydantic import ValidationError

from dicom_ingest.adapters.modalities import ModalityConflict, ModalityNotFound, SqlModalityRegistry
from dicom_ingest.entrypoints.modalities_models import ModalityList, ModalityPath, ModalityRegistration, ModalityView
from radcommon.auth import require_roles
from radcommon.contracts import RoleValues
from radcommon.openapi import operation, parse_body
from radcommon.problems import Conflict, NotFound, UnprocessableContent

log = logging.getLogger(__name__)
registry_key = web.AppKey("modality_registry", SqlModalityRegistry)

MANAGING = (RoleValues.ADMIN, RoleValues.MANAGER)
READING = (*MANAGING, RoleValues.TECHNICIAN)


def add_routes(app: web.Application, registry: SqlModalityRegistry) -> None:
    app[registry_key] = registry
    app.router.add_get("/modalities", list_modalities)
    app.router.add_post("/modalities", register_modality)
    app.router.add_delete("/modalities/{modality_id}", unregister_modality)


@operation("The modalities registered for the caller's organisation", responses={200: ModalityList, 403: None},
           tags=["modalities"], security=True)
async def list_modalities(request: web.Request) -> web.Response:
    principal = require_roles(request, *READING)
    found = await request.app[registry_key].of_organization(principal.organization_id)
    return web.json_response(ModalityList(items=[ModalityView.of(m) for m in found]).model_dump(mode="json"))


@operation("Register a modality for the caller's organisation", request=ModalityRegistration,
           responses={201: ModalityView, 403: None, 409: None}, tags=["modalities"], security=True)
async def register_modality(request: web.Request) -> web.Response:
    """Associations from this calling AE title (and host, when given) are accepted from now on: what
    they send belongs to the organisation, and their C-FIND, C-MOVE and C-GET see its studies only.
    With a port (and a host that is one address) it is also a C-MOVE destination of the organisation.
    409 when the title is registered at that host by anyone, at an overlapping host by another
    organisation, or (with a port) already as a move destination of the organisation."""
    principal = require_roles(request, *MANAGING)
    body = await parse_body(request, ModalityRegistration)
    try:
        modality = await request.app[registry_key].register(principal.organization_id, body.ae_title, body.host,
                                                            body.description, body.port)
    except ModalityConflict as error:
        raise Conflict(str(error)) from None
    except ValueError as error:  # the model checked already; kept so the registry's own rules never 500
        raise UnprocessableContent(str(error)) from None
    log.info("modality registered", extra={"modality_id": str(modality.id), "ae_title": modality.ae_title,
                                           "port": modality.port,
                                           "organization_id": str(principal.organization_id),
                                           "user_id": str(principal.user_id)})
    return web.json_response(ModalityView.of(modality).model_dump(mode="json"), status=201)


@operation("Remove a modality of the caller's organisation", path=ModalityPath,
           responses={204: None, 403: None, 404: None}, tags=["modalities"], security=True)
async def unregister_modality(request: web.Request) -> web.Response:
    """New associations from it are rejected from now on (other replicas follow within seconds)."""
    principal = require_roles(request, *MANAGING)
    try:
        modality_id = ModalityPath.model_validate(dict(request.match_info)).modality_id
        await request.app[registry_key].unregister(principal.organization_id, modality_id)
    except (ValidationError, ModalityNotFound):
        raise NotFound("no such modality") from None
    log.info("modality removed", extra={"modality_id": str(modality_id),
                                        "organization_id": str(principal.organization_id),
                                        "user_id": str(principal.user_id)})
    return web.Response(status=204)
