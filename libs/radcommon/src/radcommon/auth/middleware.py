"""Bearer tokens on aiohttp requests (RFC 6750): who is asking, and may they.

``app.middlewares.append(auth_middleware(verifier, public=("/api/auth/login",)))`` after
:func:`radcommon.http.create_app`; handlers then read ``request[principal_key]`` or call
:func:`require_roles`. Probes and metrics never need a token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from uuid import UUID

from aiohttp import web

from radcommon.auth.tokens import Principal, TokenError, TokenVerifier
from radcommon.contracts.identity import RoleValues
from radcommon.problems import Forbidden, Unauthorized

principal_key = web.RequestKey("principal", Principal)
ALWAYS_PUBLIC = ("/healthz", "/readyz", "/metrics", "/openapi.json")
_CHALLENGE = 'Bearer realm="telerad"'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_middleware(verifier: TokenVerifier, *, public: Iterable[str] = ()) -> Callable[..., Awaitable[
        web.StreamResponse]]:
    """Verify the bearer token of every request outside ``public`` path prefixes.

    A prefix matches whole path segments (``/api/auth/login`` matches ``/api/auth/login/x``, not
    ``/api/auth/loginx``); one that ends in ``/`` matches everything below it.
    """
    prefixes = tuple(public)

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.rel_url.path_safe  # what the router matches: an encoded "/" stays encoded
        if path in ALWAYS_PUBLIC or any(_under(path, prefix) for prefix in prefixes):
            return await handler(request)
        token = bearer_token(request)
        if token is None:  # RFC 6750 3.1: no error code when the request carried no bearer token
            reason = "unsupported_scheme" if "Authorization" in request.headers else "missing"
            raise Unauthorized(reason, www_authenticate=_CHALLENGE)
        try:
            request[principal_key] = await verifier.verify(token)
        except TokenError as error:
            raise Unauthorized(error.reason,
                               www_authenticate=f'{_CHALLENGE}, error="invalid_token"') from None
        return await handler(request)

    return authenticate


def bearer_token(request: web.Request) -> str | None:
    """The credentials of ``Authorization: Bearer <token>``; None for no header or another scheme."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def principal_of(request: web.Request) -> Principal:
    """The authenticated principal; 401 on a route the middleware let through without a token."""
    if principal_key not in request:
        raise Unauthorized("missing", www_authenticate=_CHALLENGE)
    return request[principal_key]


def require_roles(request: web.Request, *roles: RoleValues) -> Principal:
    """The principal, if it holds any of ``roles``; 403 otherwise."""
    if not roles:
        raise ValueError("require_roles needs at least one role")
    principal = principal_of(request)
    if not principal.has_any(*roles):
        raise Forbidden(f"Requires one of the roles: {', '.join(sorted(roles))}.")
    return principal


def organization_of(request: web.Request) -> UUID:
    return principal_of(request).organization_id


def _under(path: str, prefix: str) -> bool:
    if prefix.endswith("/"):
        return path.startswith(prefix)
    return path == prefix or path.startswith(prefix + "/")
