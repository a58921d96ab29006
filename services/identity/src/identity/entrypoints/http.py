from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

from aiohttp import web

from identity.domain.errors import (
    InvalidCredentials,
    InvalidRefreshToken,
    NotAllowed,
    SecondFactorRequired,
    SessionEnded,
    TooManyAttempts,
)
from identity.entrypoints import models
from identity.service_layer import handlers
from identity.service_layer.handlers import Dependencies
from identity.service_layer.unit_of_work import IdentityUnitOfWork
from radcommon.auth import principal_key, require_roles
from radcommon.contracts import RoleValues
from radcommon.openapi import operation, parse_body
from radcommon.problems import Forbidden, Problem, Unauthorized

deps_key = web.AppKey("identity_deps", Dependencies)
UnitOfWorkFactory = Callable[[], IdentityUnitOfWork]
uow_key: web.AppKey[UnitOfWorkFactory] = web.AppKey("identity_uow")
trusted_proxies_key = web.AppKey("trusted_proxies", frozenset[IPv4Network | IPv6Network])
PUBLIC = ("/api/auth/login", "/api/auth/refresh-token", "/.well-known/", "/openapi.json")


class TooManyRequests(Problem):
    status_code, title = 429, "Too Many Requests"


def add_routes(app: web.Application, deps: Dependencies, uow: Callable[[], IdentityUnitOfWork],
               trusted_proxies: frozenset[IPv4Network | IPv6Network]) -> None:
    app[deps_key] = deps
    app[trusted_proxies_key] = trusted_proxies
    app[uow_key] = uow
    app.router.add_post("/api/auth/login", login)
    app.router.add_post("/api/auth/refresh-token", refresh_token)
    app.router.add_post("/api/auth/logout", logout)
    app.router.add_get("/api/auth/session-status", session_status)
    app.router.add_post("/api/auth/extend-session", extend_session)
    app.router.add_post("/api/auth/step-up", step_up)
    app.router.add_post("/api/auth/2fa/enrol", begin_totp_enrolment)
    app.router.add_post("/api/auth/2fa/verify", confirm_totp_enrolment)
    app.router.add_post("/api/auth/keys/rotate", rotate_keys)
    app.router.add_get("/.well-known/jwks.json", jwks)


def now() -> datetime:
    return datetime.now(UTC)


def address(request: web.Request) -> str:
    """The caller's address; behind the gateway (a trusted proxy on loopback or the cluster) its X-Forwarded-For."""
    forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
    if forwarded and _trusted(request.remote, request.app[trusted_proxies_key]):
        return forwarded[:64]
    return (request.remote or "unknown")[:64]


def _trusted(peer: str | None, networks: frozenset[IPv4Network | IPv6Network]) -> bool:
    try:
        address = ip_address(peer or "")
    except ValueError:
        return False
    return any(address in network for network in networks)


async def run(request: web.Request, work: Callable[[IdentityUnitOfWork, Dependencies], Awaitable[Any]]) -> Any:
    try:
        async with request.app[uow_key]() as uow:
            return await work(uow, request.app[deps_key])
    except TooManyAttempts as error:
        retry_after = max(1, int((error.until - now()).total_seconds()) + 1)
        problem = TooManyRequests("too many failed attempts; try again later", retry_after=retry_after)
        problem.headers["Retry-After"] = str(retry_after)
        raise problem from None
    except SecondFactorRequired as error:
        raise Unauthorized(str(error), second_factor_required=True) from None
    except (InvalidCredentials, InvalidRefreshToken, SessionEnded) as error:
        raise Unauthorized(str(error)) from None
    except NotAllowed as error:
        raise Forbidden(str(error)) from None


def tokens(pair: handlers.TokenPair) -> web.Response:
    expires_in = int((pair.access.expires_at - now()).total_seconds())
    payload = models.TokenResponse(access_token=pair.access.token, refresh_token=pair.refresh_token,
                                   expires_in=expires_in, two_factor_enrolment_required=pair.enrolment_required)
    return web.json_response(payload.model_dump(), headers={"Cache-Control": "no-store"})


@operation("Sign in with e-mail, password and, when enrolled, a TOTP or backup code",
           request=models.LoginRequest, responses={200: models.TokenResponse, 401: None, 429: None}, tags=["auth"])
async def login(request: web.Request) -> web.Response:
    cmd = await parse_body(request, models.LoginRequest)
    pair = await run(request, lambda uow, deps: handlers.login(
        uow, deps, email=cmd.email, password=cmd.password, totp_code=cmd.totp, backup_code=cmd.backup_code,
        address=address(request), user_agent=request.headers.get("User-Agent", ""), now=now()))
    return tokens(pair)


@operation("Trade a refresh token for new tokens; a reused one ends the session",
           request=models.RefreshRequest, responses={200: models.TokenResponse, 401: None}, tags=["auth"])
async def refresh_token(request: web.Request) -> web.Response:
    cmd = await parse_body(request, models.RefreshRequest)
    pair = await run(request, lambda uow, deps: handlers.refresh(uow, deps, refresh_token=cmd.refresh_token,
                                                                 now=now()))
    return tokens(pair)


@operation("End this session", responses={204: None}, tags=["auth"], security=True)
async def logout(request: web.Request) -> web.Response:
    principal = request[principal_key]
    await run(request, lambda uow, deps: handlers.logout(uow, deps, session_id=principal.session_id, now=now()))
    return web.Response(status=204)


@operation("This session: who, since when, when it expires", responses={200: models.SessionStatusResponse},
           tags=["auth"], security=True)
async def session_status(request: web.Request) -> web.Response:
    principal = request[principal_key]

    async def status(uow: IdentityUnitOfWork, deps: Dependencies) -> models.SessionStatusResponse:
        session, user, policy = await handlers.active_session(uow, principal.session_id, now())
        started, seen = handlers.aware(session.started_at), handlers.aware(session.last_seen_at)
        return models.SessionStatusResponse(
            session_id=session.id, user_id=user.id, organization_id=user.organization_id, email=user.email,
            roles=list(user.roles), amr=list(session.amr), started_at=started, last_seen_at=seen,
            idle_expires_at=seen + policy.idle_timeout, absolute_expires_at=started + policy.absolute_lifetime,
            totp_enabled=user.totp_enabled)

    return web.json_response((await run(request, status)).model_dump(mode="json"))


@operation("Keep this session alive; a fresh access token", responses={200: models.AccessTokenResponse},
           tags=["auth"], security=True)
async def extend_session(request: web.Request) -> web.Response:
    principal = request[principal_key]
    access, idle_expires_at = await run(request, lambda uow, deps: handlers.extend_session(
        uow, deps, session_id=principal.session_id, now=now()))
    payload = models.AccessTokenResponse(access_token=access.token, idle_expires_at=idle_expires_at,
                                         expires_in=int((access.expires_at - now()).total_seconds()))
    return web.json_response(payload.model_dump(mode="json"), headers={"Cache-Control": "no-store"})


@operation("Re-authenticate (password and TOTP) for a two-minute signing token",
           request=models.StepUpRequest, responses={200: models.StepUpResponse, 403: None}, tags=["auth"],
           security=True)
async def step_up(request: web.Request) -> web.Response:
    principal = request[principal_key]
    cmd = await parse_body(request, models.StepUpRequest)
    token = await run(request, lambda uow, deps: handlers.step_up(
        uow, deps, session_id=principal.session_id, password=cmd.password, totp_code=cmd.totp,
        address=address(request), now=now()))
    payload = models.StepUpResponse(step_up_token=token.token, amr=["pwd", "otp"],
                                    expires_in=int((token.expires_at - now()).total_seconds()))
    return web.json_response(payload.model_dump(), headers={"Cache-Control": "no-store"})


@operation("Start TOTP enrolment: a secret, its otpauth URI and QR code",
           responses={200: models.TotpEnrolmentResponse, 403: None}, tags=["auth"], security=True)
async def begin_totp_enrolment(request: web.Request) -> web.Response:
    principal = request[principal_key]
    enrolment = await run(request, lambda uow, deps: handlers.begin_totp_enrolment(uow, deps,
                                                                                   user_id=principal.user_id))
    payload = models.TotpEnrolmentResponse(otpauth_uri=enrolment.otpauth_uri, secret=enrolment.secret,
                                           qr_png_base64=base64.b64encode(enrolment.qr_png).decode())
    return web.json_response(payload.model_dump(), headers={"Cache-Control": "no-store"})


@operation("Confirm TOTP enrolment with a first code; ten backup codes, shown once",
           request=models.TotpConfirmRequest, responses={200: models.BackupCodesResponse, 403: None},
           tags=["auth"], security=True)
async def confirm_totp_enrolment(request: web.Request) -> web.Response:
    principal = request[principal_key]
    cmd = await parse_body(request, models.TotpConfirmRequest)
    codes = await run(request, lambda uow, deps: handlers.confirm_totp_enrolment(
        uow, deps, user_id=principal.user_id, code=cmd.code, now=now()))
    return web.json_response(models.BackupCodesResponse(backup_codes=codes).model_dump(),
                             headers={"Cache-Control": "no-store"})


@operation("Rotate the token signing key now (platform operator)", responses={200: models.KeyRotationResponse,
           403: None}, tags=["keys"], security=True)
async def rotate_keys(request: web.Request) -> web.Response:
    require_roles(request, RoleValues.OPERATOR)
    key = await run(request, lambda uow, deps: deps.keyring.rotate(uow, now()))
    return web.json_response(models.KeyRotationResponse(kid=key.kid).model_dump())


@operation("The public keys that verify tokens (RFC 7517)", responses={200: dict[str, Any]}, tags=["keys"])
async def jwks(request: web.Request) -> web.Response:
    keys = await run(request, lambda uow, deps: deps.keyring.public_keys(uow, now()))
    return web.json_response(keys, headers={"Cache-Control": "public, max-age=60"})
