"""The public HTTP entry: verifies every request, applies role rules and rate limits, proxies to services."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
from aiohttp import web

from gateway.domain import LIVE_ROUTE, ROUTE_ROLES, VIEWER_PATH, RateLimiter, may_call
from gateway.openapi import add_public_document_route, mark_proxy
from radcommon.auth import TokenError, TokenVerifier, principal_key
from radcommon.logging import request_id_var
from radcommon.problems import BadGateway, Forbidden, Problem, ServiceUnavailable, Unauthorized
from radcommon.telemetry import current_traceparent

client_key = web.AppKey("client", aiohttp.ClientSession)
upstreams_key = web.AppKey("upstreams", dict[str, str])
verifier_key = web.AppKey("verifier", TokenVerifier)
login_limiter_key = web.AppKey("login_limiter", RateLimiter)
user_limiter_key = web.AppKey("user_limiter", RateLimiter)
cors_key = web.AppKey("cors_origins", frozenset[str])

PUBLIC_ROUTES = {("POST", "/api/auth/login"), ("POST", "/api/auth/refresh-token"),
                 ("POST", "/api/auth/accept-invitation"), ("POST", "/api/auth/password-reset"),
                 ("POST", "/api/auth/password-reset/confirm"), ("GET", "/.well-known/jwks.json"),
                 # OpenID Connect (identity is the provider): everything but userinfo is public
                 ("GET", "/.well-known/openid-configuration"), ("GET", "/oidc/authorize"), ("POST", "/oidc/authorize"),
                 ("POST", "/oidc/token"), ("GET", "/oidc/logout"), ("POST", "/oidc/logout"),
                 # the public keys that verify report signatures, for anyone checking one offline
                 ("GET", "/api/signatures/keys")}
RATE_LIMITED_PUBLIC = {"/api/auth/login", "/api/auth/refresh-token", "/api/auth/accept-invitation",
                       "/api/auth/password-reset", "/api/auth/password-reset/confirm", "/oidc/token"}
#: Public routes rate-limited only for this method (the sign-in form's GET is free, its POST is not).
RATE_LIMITED_METHODS = {("POST", "/oidc/authorize")}
IDENTITY_ROUTES = ("/api/auth/", "/api/organizations", "/api/users", "/oidc/", "/.well-known/")
FORWARDED_HEADERS = ("Authorization", "Content-Type", "Accept", "User-Agent", "X-Step-Up-Token")
PASSED_HEADERS = ("Content-Type", "Retry-After", "WWW-Authenticate", "Cache-Control", "Pragma", "Location",
                  "Content-Security-Policy", "Warning", "Vary", "Content-Disposition")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TooManyRequests(Problem):
    status_code, title = 429, "Too Many Requests"


def add_routes(app: web.Application, *, upstreams: dict[str, str], verifier: TokenVerifier, timeout: float,
               login_limiter: RateLimiter, user_limiter: RateLimiter, cors_origins: list[str],
               dicomweb: DicomWebProxy | None = None) -> None:
    app[upstreams_key] = {name: url.rstrip("/") for name, url in upstreams.items()}
    app[verifier_key] = verifier
    app[login_limiter_key] = login_limiter
    app[user_limiter_key] = user_limiter
    app[cors_key] = frozenset(cors_origins)
    app.middlewares.extend([_security_headers, _authenticate])
    app.router.add_get("/api/modalities", proxy_to("dicom-ingest", "/modalities"))
    app.router.add_get("/api/ingest/spool", proxy_to("dicom-ingest", "/spool"))
    app.router.add_post("/api/ingest/spool/set-aside/retry", proxy_to("dicom-ingest", "/spool/set-aside/retry"))
    app.router.add_post("/api/modalities", proxy_to("dicom-ingest", "/modalities"))
    app.router.add_delete("/api/modalities/{modality_id:[0-9a-fA-F-]{36}}",
                          proxy_to("dicom-ingest", "/modalities/{modality_id}"))
    for method, path in sorted(PUBLIC_ROUTES | ROUTE_ROLES.keys()):
        if path.startswith(IDENTITY_ROUTES):
            app.router.add_route(method, path, proxy_to("identity"))
        elif service := _owner(path):
            app.router.add_route(method, _UUID_PARAMETER.sub(r"{\1:[0-9a-fA-F-]{36}}", path),
                                 proxy_to(service, path.removeprefix("/api")))

    for method, path in sorted(key for key in ROUTE_ROLES if key[1].startswith(DICOMWEB_ROUTES)):
        app.router.add_route(method, path, stream_to("dicom-ingest", dicomweb or DicomWebProxy()))

    add_public_document_route(app, app[upstreams_key], public_routes=PUBLIC_ROUTES, client=lambda: app[client_key])

    async def client(app: web.Application) -> AsyncIterator[None]:
        app[client_key] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
        yield
        await app[client_key].close()

    app.cleanup_ctx.append(client)


@web.middleware
async def _security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    allowed = origin is not None and origin in request.app[cors_key]
    if request.method == "OPTIONS" and origin is not None:
        if not allowed:
            raise Forbidden("this origin may not call the API")
        response: web.StreamResponse = web.Response(status=204, headers={
            "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE",
            "Access-Control-Allow-Headers": "Authorization, Content-Type, Accept, X-Request-ID, X-Step-Up-Token",
            "Access-Control-Max-Age": "600"})
    else:
        try:
            response = await handler(request)
        except web.HTTPException as error:
            for name, value in _headers(origin if allowed else None).items():
                error.headers.setdefault(name, value)
            raise
    for name, value in _headers(origin if allowed else None).items():
        response.headers.setdefault(name, value)
    return response


def _headers(origin: str | None) -> dict[str, str]:
    headers = dict(SECURITY_HEADERS)
    if origin:
        headers.update({"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                        "Access-Control-Expose-Headers": "X-Request-ID, Retry-After, Warning"})
    return headers


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else ""
    key = (request.method, route)
    if route in ("/healthz", "/readyz", "/metrics", "/openapi.json", VIEWER_PATH, VIEWER_PATH + "/{path}"):
        return await handler(request)
    if key == LIVE_ROUTE and request.headers.get("Upgrade", "").lower() == "websocket":
        return await handler(request)  # a WebSocket authenticates in-band (entrypoints/ws.py): browsers send no header
    if key in PUBLIC_ROUTES:
        if route in RATE_LIMITED_PUBLIC or key in RATE_LIMITED_METHODS:
            _limit(request.app[login_limiter_key], request.remote or "unknown")
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("a bearer token is required", 'Bearer realm="telerad"')
    try:
        principal = await request.app[verifier_key].verify(token.strip())
    except TokenError as error:
        raise _unauthorized(f"invalid token: {error.reason}", 'Bearer realm="telerad", error="invalid_token"') from None
    _limit(request.app[user_limiter_key], str(principal.user_id))
    if not may_call(principal.roles, key):
        raise Forbidden("your role may not do this")
    request[principal_key] = principal
    return await handler(request)


def _unauthorized(detail: str, challenge: str) -> Unauthorized:
    error = Unauthorized(detail)
    error.headers["WWW-Authenticate"] = challenge
    return error


def _limit(limiter: RateLimiter, key: str) -> None:
    if (wait := limiter.retry_after(key)) > 0:
        error = TooManyRequests("slow down", retry_after=max(1, round(wait)))
        error.headers["Retry-After"] = str(max(1, round(wait)))
        raise error


def proxy_to(service: str, path: str | None = None) -> Handler:
    """``path`` is the upstream path (default: the request's); ``{name}`` in it is the route's match."""
    async def proxy(request: web.Request) -> web.Response:
        headers = {h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers}
        headers["X-Forwarded-For"] = request.remote or ""
        if request_id := request_id_var.get():
            headers["X-Request-ID"] = request_id
        if traceparent := current_traceparent():
            headers["traceparent"] = traceparent
        url = request.app[upstreams_key][service] + (_filled(path, request) if path else request.path)
        data = await request.read() if request.can_read_body else None
        try:
            async with request.app[client_key].request(request.method, url, params=request.query, data=data,
                                                       headers=headers, allow_redirects=False) as upstream:
                payload = await upstream.read()
                status = upstream.status
                passed = {h: upstream.headers[h] for h in PASSED_HEADERS if h in upstream.headers}
        except (aiohttp.ClientConnectionError, TimeoutError) as error:
            raise ServiceUnavailable(f"{service} is not answering") from error
        except aiohttp.ClientError as error:
            raise BadGateway(f"{service} answered with an error") from error
        if status >= 500:
            raise BadGateway(f"{service} failed with status {status}")
        return web.Response(body=payload, status=status, headers=passed)

    mark_proxy(proxy, service, path)
    return proxy


_UUID_PARAMETER = re.compile(r"\{(\w+_id)\}")
#: /api/<prefix>... → the service that serves <prefix>... (the gateway strips /api).
API_OWNERS = {"worklist": "worklist", "remote-pacs": "dicom-ingest", "reports": "reporting",
              "report-templates": "reporting", "disputes": "reporting", "peer-reviews": "reporting",
              "signatures": "signature"}


def _owner(path: str) -> str | None:
    prefix = path.removeprefix("/api/").split("/", 1)[0] if path.startswith("/api/") else ""
    return API_OWNERS.get(prefix)


def _filled(path: str, request: web.Request) -> str:
    return path.format_map({name: quote(value, safe="") for name, value in request.match_info.items()})


# --- DICOMweb: large bodies both ways ------------------------------------------------------------------------------

DICOMWEB_ROUTES = ("/dicomweb/",)
STREAM_CHUNK_BYTES = 256 * 1024
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DicomWebProxy:
    """How DICOMweb is proxied: a request body (STOW-RS) of up to ``max_body_bytes``, and at most
    ``read_timeout_seconds`` without a byte from the service (it stores a whole request before it answers)."""

    max_body_bytes: int = 2 * 1024**3
    read_timeout_seconds: float = 300.0


class ContentTooLarge(Problem):
    status_code, title = 413, "Content Too Large"


class _BodyTooLarge(Exception):
    pass


def stream_to(service: str, limits: DicomWebProxy) -> Handler:
    """Like :func:`proxy_to`, but streaming: the request body goes up as it arrives (past the app's
    1 MiB body limit, up to ``limits.max_body_bytes``: 413 beyond), the response comes down as the
    service sends it, so neither side is ever held whole in the gateway's memory."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=limits.read_timeout_seconds)

    async def proxy(request: web.Request) -> web.StreamResponse:
        if (request.content_length or 0) > limits.max_body_bytes:
            raise ContentTooLarge(f"the body may be at most {limits.max_body_bytes} bytes")
        headers = {h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers}
        headers["X-Forwarded-For"] = request.remote or ""
        if request_id := request_id_var.get():
            headers["X-Request-ID"] = request_id
        if traceparent := current_traceparent():
            headers["traceparent"] = traceparent
        sent = 0

        async def body() -> AsyncIterator[bytes]:
            nonlocal sent
            async for chunk in request.content.iter_chunked(STREAM_CHUNK_BYTES):
                sent += len(chunk)
                if sent > limits.max_body_bytes:
                    raise _BodyTooLarge  # aborts the upstream request: the service stores nothing of it
                yield chunk

        url = request.app[upstreams_key][service] + request.path
        try:
            upstream = await request.app[client_key].request(
                request.method, url, params=request.query, data=body() if request.body_exists else None,
                headers=headers, allow_redirects=False, timeout=timeout)
        except (aiohttp.ClientError, TimeoutError) as error:
            if sent > limits.max_body_bytes:
                raise ContentTooLarge(f"the body may be at most {limits.max_body_bytes} bytes") from None
            if isinstance(error, aiohttp.ClientConnectionError | TimeoutError):
                raise ServiceUnavailable(f"{service} is not answering") from error
            raise BadGateway(f"{service} answered with an error") from error
        async with upstream:
            if sent > limits.max_body_bytes:
                raise ContentTooLarge(f"the body may be at most {limits.max_body_bytes} bytes")
            if upstream.status >= 500:
                raise BadGateway(f"{service} failed with status {upstream.status}")
            response = web.StreamResponse(status=upstream.status, headers={
                h: upstream.headers[h] for h in PASSED_HEADERS if h in upstream.headers})
            origin = request.headers.get("Origin")
            for name, value in _headers(origin if origin in request.app[cors_key] else None).items():
                response.headers.setdefault(name, value)  # set now: a streamed response's headers leave first
            if request_id := request_id_var.get():
                response.headers["X-Request-ID"] = request_id
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_chunked(STREAM_CHUNK_BYTES):
                    await response.write(chunk)
            except (aiohttp.ClientError, TimeoutError):
                log.warning("%s broke off a streamed response; aborting it", service, extra={"path": request.path})
                if request.transport is not None:
                    request.transport.abort()  # the client must see a truncated body, not a complete one
                return response
            await response.write_eof()
            return response

    mark_proxy(proxy, service, None)
    return proxy
