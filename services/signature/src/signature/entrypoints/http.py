"""Signatures over HTTP: sign, read, verify and validate, the audit trail, and the key ring."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from radcommon.auth import TokenVerifier, auth_middleware, require_roles
from radcommon.contracts import RoleValues
from radcommon.db import Database
from radcommon.openapi import operation, parse_body, parse_query
from radcommon.problems import Conflict, Forbidden, NotFound, ServiceUnavailable, Unauthorized
from signature import views
from signature.domain.model import (
    AlreadySigned,
    KeyAlreadyRevoked,
    NoSigningKey,
    NotNewestVersion,
    StepUpRefused,
    UnknownKey,
    UnknownVersion,
)
from signature.entrypoints.models import (
    AuditTrail,
    KeyList,
    KeyView,
    RevokeRequest,
    SignatureList,
    SignaturesQuery,
    SignatureView,
    SignRequest,
    ValidateRequest,
    VerificationView,
)
from signature.representation import key_document, signature_document
from signature.service_layer import commands
from signature.service_layer.keyring import KeyRing
from signature.service_layer.step_up import STEP_UP_HEADER
from signature.service_layer.unit_of_work import SignatureUnitOfWork

log = logging.getLogger(__name__)
database_key = web.AppKey("database", Database)
keyring_key = web.AppKey("keyring", KeyRing)
verifier_key = web.AppKey("verifier", TokenVerifier)

SEEING = (RoleValues.ADMIN, RoleValues.MANAGER, RoleValues.RADIOLOGIST, RoleValues.TECHNICIAN, RoleValues.VIEWER)
SIGNING = (RoleValues.RADIOLOGIST,)
ROTATING = (RoleValues.OPERATOR, RoleValues.ADMIN)
REVOKING = (RoleValues.OPERATOR,)
#: The key ring is public, so anyone (a regulator, offline) can check a signature document.
PUBLIC = frozenset({"/signatures/keys"})
#: RFC 9470: what a client should do on a 401 about the step-up token — authenticate again, then retry.
STEP_UP_CHALLENGE = 'Bearer realm="telerad", error="insufficient_user_authentication"'


class SignaturePath(BaseModel):
    signature_id: UUID


class ReportPath(BaseModel):
    report_id: UUID


class KeyPath(BaseModel):
    kid: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


def authentication(verifier: TokenVerifier) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Bearer tokens everywhere (radcommon's middleware) but on reading the public key ring."""
    authenticate = auth_middleware(verifier)

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        if request.method in ("GET", "HEAD") and request.rel_url.path_safe in PUBLIC:
            return await handler(request)
        return await authenticate(request, handler)

    return middleware


def add_routes(app: web.Application, db: Database, keyring: KeyRing, verifier: TokenVerifier) -> None:
    app[database_key] = db
    app[keyring_key] = keyring
    app[verifier_key] = verifier
    app.router.add_post("/signatures/sign", sign)
    app.router.add_post("/signatures/validate", validate)
    app.router.add_get("/signatures", list_signatures)
    app.router.add_get("/signatures/keys", list_keys)
    app.router.add_post("/signatures/keys/rotate", rotate_keys)
    app.router.add_post("/signatures/keys/{kid}/revoke", revoke_key)
    app.router.add_get("/signatures/verify/{signature_id}", verify)
    app.router.add_get("/signatures/audit-trail/{report_id}", audit_trail)
    app.router.add_get("/signatures/{signature_id}", get_signature)


def _uow(request: web.Request) -> SignatureUnitOfWork:
    return SignatureUnitOfWork(request.app[database_key])


def _path(request: web.Request, model: type[BaseModel], what: str) -> Any:
    try:
        return next(iter(model.model_validate(dict(request.match_info)).model_dump().values()))
    except ValidationError:
        raise NotFound(f"no such {what}") from None


@operation("Sign a submitted report version (or addendum) with a fresh step-up token", request=SignRequest,
           responses={201: SignatureView, 401: None, 403: None, 404: None, 409: None, 503: None},
           tags=["signatures"], security=True)
async def sign(request: web.Request) -> web.Response:
    """Two tokens: the access token (``Authorization: Bearer``) and, in the ``X-Step-Up-Token`` header, a
    step-up token identity issued for signing (``POST /api/auth/step-up``: password and TOTP again). The
    step-up token must be the signer's own and unexpired; once the version is found, this request spends it
    whatever its outcome. A problem with it is 401, ``code`` saying which; another user's or organisation's is
    403. Only the newest submitted version can be signed (409 otherwise), once as ``authored``; other meanings
    (``reviewed``, ``approved``) by other radiologists are signatures of their own. Refusals of a known version
    go to the audit trail."""
    principal = require_roles(request, *SIGNING)
    body = await parse_body(request, SignRequest)
    cmd = commands.SignReport(signer=principal, step_up_token=request.headers.get(STEP_UP_HEADER),
                              report_id=body.report_id, version=body.version, addendum_id=body.addendum_id,
                              meaning=body.meaning)
    try:
        signature, version = await commands.sign_report(_uow(request), request.app[keyring_key],
                                                        request.app[verifier_key], cmd)
    except StepUpRefused as error:
        log.warning("signing refused: step-up", extra={"user_id": str(principal.user_id), "code": error.code,
                                                       "report_id": str(body.report_id)})
        if error.forbidden:
            raise Forbidden(str(error), code=error.code) from None
        raise Unauthorized(str(error), www_authenticate=STEP_UP_CHALLENGE, code=error.code) from None
    except UnknownVersion as error:
        raise NotFound(str(error), code=error.code) from None
    except (NotNewestVersion, AlreadySigned) as error:
        raise Conflict(str(error), code=error.code) from None
    except NoSigningKey as error:
        raise ServiceUnavailable(str(error), code=error.code) from None
    log.info("report signed", extra={"signature_id": str(signature.id), "report_id": str(signature.report_id),
                                     "version": signature.version, "meaning": signature.meaning.value,
                                     "key_id": signature.key_id})
    return web.json_response(signature_document(signature, version), status=201,
                             headers={"Location": f"/signatures/{signature.id}"})


@operation("One signature, with the manifestation every rendering shows (printed name, date and time, meaning)",
           path=SignaturePath, responses={200: SignatureView, 403: None, 404: None}, tags=["signatures"],
           security=True)
async def get_signature(request: web.Request) -> web.Response:
    principal = require_roles(request, *SEEING)
    signature_id = _path(request, SignaturePath, "signature")
    async with request.app[database_key].session() as session:
        document = await views.signature(session, principal.organization_id, signature_id)
    if document is None:
        raise NotFound("no such signature")
    return web.json_response(document)


@operation("The signatures of a report, oldest first", query=SignaturesQuery,
           responses={200: SignatureList, 403: None}, tags=["signatures"], security=True)
async def list_signatures(request: web.Request) -> web.Response:
    principal = require_roles(request, *SEEING)
    query = parse_query(request, SignaturesQuery)
    async with request.app[database_key].session() as session:
        found = await views.signatures_of_report(session, principal.organization_id, query.report_id)
    return web.json_response({"signatures": found})


@operation("Verify a stored signature against what is stored now", path=SignaturePath,
           responses={200: VerificationView, 403: None, 404: None}, tags=["signatures"], security=True)
async def verify(request: web.Request) -> web.Response:
    """Recomputes the content's digest (``content_changed``), rebuilds the manifest from the stored record
    (``manifest_changed``), checks the Ed25519 signature with the key it names (``signature_invalid``,
    ``signature_malformed``, ``key_unknown``) and the key's standing (``key_revoked``, with the time)."""
    principal = require_roles(request, *SEEING)
    signature_id = _path(request, SignaturePath, "signature")
    async with request.app[database_key].session() as session:
        document = await views.verification(session, principal.organization_id, signature_id)
    if document is None:
        raise NotFound("no such signature")
    return web.json_response(document)


@operation("Check a signature document against the key ring (and its content, when given)",
           request=ValidateRequest, responses={200: VerificationView, 403: None}, tags=["signatures"],
           security=True)
async def validate(request: web.Request) -> web.Response:
    """Whoever holds a signature document (from any organisation) can check it: the answer is computed from
    the document and the public key ring only — nothing stored about any signature or report is read or
    returned, so it tells nothing the caller did not bring."""
    require_roles(request, *SEEING, RoleValues.OPERATOR)
    body = await parse_body(request, ValidateRequest)
    async with request.app[database_key].session() as session:
        document = await views.validation(session, body.manifest, body.signature, body.key_id, body.content,
                                          content_given=body.content is not None)
    return web.json_response(document)


@operation("Every signing event of a report: signed, refused, and the keys that signed it retired or revoked",
           path=ReportPath, responses={200: AuditTrail, 403: None, 404: None}, tags=["signatures"], security=True)
async def audit_trail(request: web.Request) -> web.Response:
    principal = require_roles(request, *SEEING)
    report_id = _path(request, ReportPath, "report")
    async with request.app[database_key].session() as session:
        if not await views.report_known(session, principal.organization_id, report_id):
            raise NotFound("no such report in your organisation")
        entries = await views.audit_trail(session, principal.organization_id, report_id)
    return web.json_response({"report_id": str(report_id), "entries": entries})


@operation("The key ring, public: every key that ever signed, with its standing", responses={200: KeyList},
           tags=["signature keys"])
async def list_keys(request: web.Request) -> web.Response:
    """No token needed: a regulator checks a signature document offline with the key it names (Ed25519
    over the RFC 8785 canonical bytes of the manifest)."""
    async with request.app[database_key].session() as session:
        return web.json_response(await views.key_ring(session))


@operation("Rotate now: a new key signs from now on; the old one retires and still verifies",
           responses={201: KeyView, 403: None}, tags=["signature keys"], security=True)
async def rotate_keys(request: web.Request) -> web.Response:
    principal = require_roles(request, *ROTATING)
    key = await commands.rotate_keys(_uow(request), request.app[keyring_key], principal)
    log.info("signing key rotated", extra={"kid": key.kid, "by": str(principal.user_id)})
    return web.json_response(key_document(key), status=201)


@operation("Revoke a key: it stops signing, and its signatures verify as key_revoked", path=KeyPath,
           request=RevokeRequest, responses={200: KeyView, 403: None, 404: None, 409: None},
           tags=["signature keys"], security=True)
async def revoke_key(request: web.Request) -> web.Response:
    """Revoking the key that signs puts a new one in its place at once. A key is never deleted."""
    principal = require_roles(request, *REVOKING)
    kid = _path(request, KeyPath, "key")
    body = await parse_body(request, RevokeRequest)
    try:
        key = await commands.revoke_key(_uow(request), request.app[keyring_key], principal, kid, body.reason)
    except UnknownKey as error:
        raise NotFound(str(error)) from None
    except KeyAlreadyRevoked as error:
        raise Conflict(str(error)) from None
    log.warning("signing key revoked", extra={"kid": kid, "by": str(principal.user_id), "reason": body.reason})
    return web.json_response(key_document(key))
