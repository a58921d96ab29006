"""OpenID Connect over HTTP: discovery, the sign-in page, token, userinfo and logout endpoints."""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from identity.domain.errors import InvalidCredentials, SecondFactorRequired, SessionEnded, TooManyAttempts
from identity.entrypoints.http import address, deps_key, uow_key
from identity.service_layer import oidc
from identity.service_layer.oidc import AuthorizationRequest, Provider, TokenRequestError
from radcommon.auth import principal_of
from radcommon.openapi import operation
from radcommon.problems import BadRequest, Problem

provider_key = web.AppKey("oidc_provider", Provider)
PUBLIC = ("/.well-known/openid-configuration", "/oidc/authorize", "/oidc/token", "/oidc/logout")
TAGS = ["openid-connect"]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem;color:#1b1f24}"
          "label{display:block;margin-top:1rem}input{display:block;width:100%;padding:.5rem;box-sizing:border-box}"
          "button{margin:1.5rem .5rem 0 0;padding:.5rem 1rem}.error{color:#a40e26}")
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
HTML_HEADERS = {
    **NO_STORE,
    # No scripts at all; form-action is left open because the answer to the form redirects to the client.
    "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; frame-ancestors 'none'; "
                               "base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Telerad</title><style>{style}</style></head>
<body><main><h1>{title}</h1>
{body}
</main></body></html>
"""


def add_oidc_routes(app: web.Application, provider: Provider) -> None:
    """After :func:`identity.entrypoints.http.add_routes`, whose unit of work and dependencies these share."""
    app[provider_key] = provider
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/oidc/authorize", authorize)
    app.router.add_post("/oidc/authorize", sign_in)
    app.router.add_post("/oidc/token", token)
    app.router.add_get("/oidc/userinfo", userinfo)
    app.router.add_post("/oidc/userinfo", userinfo)
    app.router.add_get("/oidc/logout", logout)
    app.router.add_post("/oidc/logout", logout)

    async def create_signing_key(app: web.Application) -> None:  # in the JWKS before the first ID token
        async with app[uow_key]() as uow:
            await provider.keys.active_key(uow, now())

    app.on_startup.append(create_signing_key)


def now() -> datetime:
    return datetime.now(UTC)


def _parameters(values: MultiMapping[Any]) -> dict[str, list[str]]:
    return {name: [v for v in values.getall(name) if isinstance(v, str)] for name in set(values.keys())}


@operation("OpenID Connect discovery document", responses={200: dict[str, Any]}, tags=TAGS)
async def discovery(request: web.Request) -> web.Response:
    return web.json_response(oidc.discovery_document(request.app[provider_key].issuer),
                             headers={"Cache-Control": "public, max-age=300"})


@operation("Start signing in (authorization code flow with PKCE): the sign-in page", tags=TAGS)
async def authorize(request: web.Request) -> web.Response:
    provider = request.app[provider_key]
    try:
        auth = oidc.authorization_request(_parameters(request.query), provider.clients)
    except oidc.UntrustedRedirect as error:
        return _message_page("Cannot sign in", f"This sign-in request cannot be used: {error}.", status=400)
    except oidc.AuthorizationDenied as error:
        return _redirect(error.location(provider.issuer))
    return _sign_in_page(provider, auth, email=auth.login_hint or "")


@operation("Submit the sign-in page: on success a redirect to the client with a single-use code", tags=TAGS)
async def sign_in(request: web.Request) -> web.Response:
    provider = request.app[provider_key]
    form = _parameters(await _form(request))
    try:
        auth = oidc.authorization_request({name: form[name] for name in oidc.FORM_PARAMETERS if name in form},
                                          provider.clients)
    except oidc.UntrustedRedirect as error:
        return _message_page("Cannot sign in", f"This sign-in request cannot be used: {error}.", status=400)
    except oidc.AuthorizationDenied as error:
        return _redirect(error.location(provider.issuer))

    def field(name: str) -> str:
        values = form.get(name, [])
        return values[0].strip() if len(values) == 1 else ""

    try:
        oidc.check_sign_in_form_id(provider.box, field("request_id"), auth, now(), provider.form_lifetime)
    except oidc.SignInFormExpired:
        return _sign_in_page(provider, auth, email=field("email"), message="The page expired; please sign in again.")
    except oidc.InvalidSignInForm:
        return _message_page("Cannot sign in", "This sign-in form is not valid. Return to the application and "
                             "start again.", status=400)
    if field("cancel"):
        return _redirect(oidc.AuthorizationDenied("access_denied", "the user cancelled signing in", auth.redirect_uri,
                                                  auth.state).location(provider.issuer))
    email, password, code = field("email"), (form.get("password") or [""])[0], field("code").replace(" ", "")
    second_factor = field("second_factor") == "1"
    if not email or not password or len(email) > 254 or len(password) > 256 or len(code) > 32:
        return _sign_in_page(provider, auth, email=email[:254], second_factor=second_factor,
                             message="Enter your e-mail address and password.")
    totp_code, backup_code = (code, None) if code.isdigit() else (None, code or None)
    try:
        async with request.app[uow_key]() as uow:
            location = await oidc.sign_in(
                uow, request.app[deps_key], provider, auth, email=email, password=password, totp_code=totp_code,
                backup_code=backup_code, address=address(request), user_agent=request.headers.get("User-Agent", ""),
                now=now())
    except SecondFactorRequired:
        return _sign_in_page(provider, auth, email=email, second_factor=True,
                             message="Enter your password again with a code from your authenticator app "
                                     "(or a backup code).")
    except InvalidCredentials:
        return _sign_in_page(provider, auth, email=email, second_factor=second_factor,
                             message="The e-mail, password or code is not right.")
    except TooManyAttempts as error:
        retry_after = max(1, int((error.until - now()).total_seconds()) + 1)
        page = _sign_in_page(provider, auth, email=email, second_factor=second_factor, status=429,
                             message="Too many failed attempts; please wait a while before trying again.")
        page.headers["Retry-After"] = str(retry_after)
        return page
    return _redirect(location)


@operation("Trade an authorization code (with its PKCE verifier) or a refresh token for tokens", tags=TAGS)
async def token(request: web.Request) -> web.Response:
    if request.content_type != "application/x-www-form-urlencoded":
        return _token_error(TokenRequestError("invalid_request", "send the parameters form-encoded"))
    form = _parameters(await _form(request))
    if repeated := sorted(name for name, values in form.items() if len(values) > 1):
        return _token_error(TokenRequestError("invalid_request", f"{repeated[0]} is repeated"))
    values = {name: found[0] for name, found in form.items() if found}
    grant_type = values.get("grant_type")
    required = {"authorization_code": ("client_id", "code", "redirect_uri", "code_verifier"),
                "refresh_token": ("client_id", "refresh_token")}.get(grant_type or "")
    if required is None:
        return _token_error(TokenRequestError("unsupported_grant_type", "use authorization_code or refresh_token"))
    if missing := [name for name in required if not values.get(name)]:
        return _token_error(TokenRequestError("invalid_request", f"{missing[0]} is required"))
    provider, deps = request.app[provider_key], request.app[deps_key]
    try:
        async with request.app[uow_key]() as uow:
            if grant_type == "authorization_code":
                tokens = await oidc.exchange_code(
                    uow, deps, provider, client_id=values["client_id"], code=values["code"],
                    redirect_uri=values["redirect_uri"], code_verifier=values["code_verifier"], now=now())
            else:
                tokens = await oidc.refresh(uow, deps, provider, client_id=values["client_id"],
                                            refresh_token=values["refresh_token"], scope=values.get("scope"),
                                            now=now())
    except TokenRequestError as error:
        return _token_error(error)
    return web.json_response({
        "access_token": tokens.access_token, "token_type": "Bearer",
        "expires_in": max(0, int((tokens.expires_at - now()).total_seconds())),
        "refresh_token": tokens.refresh_token, "id_token": tokens.id_token, "scope": tokens.scope,
    }, headers=NO_STORE)


@operation("Claims about the signed-in user (OpenID Connect Core §5.3)", responses={200: dict[str, Any]},
           tags=TAGS, security=True)
async def userinfo(request: web.Request) -> web.Response:
    principal = principal_of(request)
    try:
        async with request.app[uow_key]() as uow:
            claims = await oidc.userinfo(uow, principal.session_id, now())
    except SessionEnded:
        return web.json_response({"error": "invalid_token", "error_description": "the session has ended"},
                                 status=401, headers={**NO_STORE, "WWW-Authenticate":
                                                      'Bearer realm="telerad", error="invalid_token"'})
    return web.json_response(claims, headers=NO_STORE)


@operation("End the session an ID token names, then return to the application (RP-Initiated Logout)", tags=TAGS)
async def logout(request: web.Request) -> web.Response:
    provider = request.app[provider_key]
    params = _parameters(await _form(request) if request.method == "POST" else request.query)

    def one(name: str) -> str | None:
        values = params.get(name, [])
        return values[0] if len(values) == 1 and values[0] else None

    try:
        async with request.app[uow_key]() as uow:
            location = await oidc.end_session(
                uow, request.app[deps_key], provider, id_token_hint=one("id_token_hint"), client_id=one("client_id"),
                post_logout_redirect_uri=one("post_logout_redirect_uri"), state=one("state"), now=now())
    except oidc.LogoutRefused as error:
        return _message_page("Cannot sign out", f"This sign-out request cannot be used: {error}.", status=400)
    if location is None:
        return _message_page("Signed out", "You are signed out. You may close this window.")
    return _redirect(location)


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={**NO_STORE, "Location": location, "Referrer-Policy": "no-referrer"})


def _token_error(error: TokenRequestError) -> web.Response:
    """RFC 6749 §5.2: JSON, never problem+json, since standard clients read ``error``."""
    return web.json_response({"error": error.error, "error_description": error.description},
                             status=error.status, headers=NO_STORE)


def _html(title: str, body: str, status: int) -> web.Response:
    page = _PAGE.format(title=html.escape(title), style=_STYLE, body=body)
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8",
                        headers=HTML_HEADERS)


def _message_page(title: str, message: str, status: int = 200) -> web.Response:
    return _html(title, f"<p>{html.escape(message)}</p>", status)


def _hidden(fields: Mapping[str, str]) -> str:
    return "\n".join(f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
                     for name, value in fields.items())


def _input(label: str, name: str, kind: str, autocomplete: str, value: str = "", *, required: bool = True,
           extra: Sequence[str] = ()) -> str:
    attributes = " ".join([f'type="{kind}"', f'name="{name}"', f'id="{name}"', f'autocomplete="{autocomplete}"',
                           *([f'value="{html.escape(value)}"'] if value else []), *(["required"] if required else []),
                           *extra])
    return f'<label for="{name}">{html.escape(label)}</label><input {attributes}>'


def _sign_in_page(provider: Provider, auth: AuthorizationRequest, *, email: str, second_factor: bool = False,
                  message: str = "", status: int = 200) -> web.Response:
    """The request's parameters ride along as hidden fields with the sealed form id that vouches for them."""
    form_id = oidc.sign_in_form_id(provider.box, auth, now())
    parts = [f"<p>to continue to <strong>{html.escape(auth.client_id)}</strong></p>"]
    if message:
        parts.append(f'<p class="error" role="alert">{html.escape(message)}</p>')
    hidden = {"request_id": form_id, **auth.form_fields(), **({"second_factor": "1"} if second_factor else {})}
    parts += ['<form method="post" action="authorize">', _hidden(hidden),
              _input("E-mail", "email", "email", "username", email, extra=[] if email else ["autofocus"]),
              _input("Password", "password", "password", "current-password", extra=["autofocus"] if email else [])]
    if second_factor:
        parts.append(_input("Authenticator code or backup code", "code", "text", "one-time-code",
                            extra=['maxlength="32"']))
    parts += ['<button type="submit">Sign in</button>',
              '<button type="submit" name="cancel" value="1" formnovalidate>Cancel</button>', "</form>"]
    return _html("Sign in", "\n".join(parts), status)


class UnsupportedMediaType(Problem):
    status_code, title = 415, "Unsupported Media Type"


FORM = "application/x-www-form-urlencoded"


async def _form(request: web.Request) -> MultiMapping[str]:
    """The form body; OAuth 2.0 endpoints take only URL-encoded forms (RFC 6749 §3.2, §4.1.3)."""
    if request.content_type != FORM:
        raise UnsupportedMediaType(f"send the parameters as {FORM}")
    try:
        return await request.post()  # type: ignore[return-value]
    except ValueError:
        raise BadRequest("the form cannot be read") from None
