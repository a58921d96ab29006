"""identity as an OpenID Connect provider (OIDC Core 1.0; RFC 6749 code flow, RFC 7636 PKCE, RFC 9207 iss).

Each authorization code stands for one ordinary session, started by :func:`handlers.login` (lockout, second
factor, session limits and events all apply). The code's exchange rotates that session's first refresh token
through :func:`handlers.refresh`, so a client receives exactly the tokens ``/api/auth/login`` hands out, plus
an ID token signed with RS256.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlencode
from uuid import UUID

import jwt
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.engine import CursorResult
from sqlmodel import col, select

from identity.adapters.oidc_tables import AuthorizationCodeRow, IdTokenKeyRow
from identity.adapters.tables import RefreshTokenRow, SessionRow, UserRow
from identity.config_oidc import OidcClient
from identity.domain.errors import InvalidRefreshToken, SessionEnded
from identity.domain.sessions import SessionPolicy, new_opaque_token, pkce_s256_matches, token_digest
from identity.domain.totp import SecretBox
from identity.service_layer import handlers
from identity.service_layer.handlers import Dependencies, aware
from identity.service_layer.unit_of_work import IdentityUnitOfWork

SCOPES = ("openid", "profile", "email")
CLAIMS = ("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid", "amr", "email", "name",
          "organization", "roles")
#: The authorization request's parameters, carried through the sign-in form.
FORM_PARAMETERS = ("client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge",
                   "code_challenge_method")
_SINGLE = (*FORM_PARAMETERS, "prompt", "response_mode", "login_hint", "max_age", "display", "ui_locales")
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
_LIMITS = {"state": 1024, "nonce": 512, "scope": 256, "login_hint": 254}
# Codes are kept after use: a second use must be recognised, and a refresh finds its client through the code.
_KEEP_CODES = SessionPolicy().absolute_lifetime + timedelta(days=1)
_FORM_PURPOSE = "oidc-sign-in-form"


@dataclass
class Provider:
    issuer: str
    clients: Mapping[str, OidcClient]
    box: SecretBox
    keys: IdTokenKeys
    code_lifetime: timedelta = timedelta(seconds=60)
    form_lifetime: timedelta = timedelta(minutes=15)


def discovery_document(issuer: str) -> dict[str, Any]:
    """OpenID Connect Discovery 1.0 §3, with everything oidc-client-ts (OHIF's library) looks up."""
    base = issuer.rstrip("/")
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{base}/oidc/authorize",
        "token_endpoint": f"{base}/oidc/token",
        "userinfo_endpoint": f"{base}/oidc/userinfo",
        "end_session_endpoint": f"{base}/oidc/logout",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": list(SCOPES),
        "claims_supported": list(CLAIMS),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "prompt_values_supported": ["none", "login"],
        "authorization_response_iss_parameter_supported": True,
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }


@dataclass(frozen=True)
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    state: str | None = None
    nonce: str | None = None
    login_hint: str | None = None

    @property
    def granted_scope(self) -> str:
        requested = self.scope.split()
        return " ".join(s for s in SCOPES if s in requested)

    def form_fields(self) -> dict[str, str]:
        fields = {"client_id": self.client_id, "redirect_uri": self.redirect_uri, "response_type": "code",
                  "scope": self.scope, "state": self.state, "nonce": self.nonce,
                  "code_challenge": self.code_challenge, "code_challenge_method": "S256"}
        return {name: value for name, value in fields.items() if value is not None}


class UntrustedRedirect(Exception):
    """The client or its redirect_uri is unknown: tell the user, never redirect (RFC 6749 §4.1.2.1)."""


class AuthorizationDenied(Exception):
    """An error the client hears about at its redirect_uri (RFC 6749 §4.1.2.1)."""

    def __init__(self, error: str, description: str, redirect_uri: str, state: str | None) -> None:
        super().__init__(description)
        self.error, self.description, self.redirect_uri, self.state = error, description, redirect_uri, state

    def location(self, issuer: str) -> str:
        return redirect_url(self.redirect_uri, {"error": self.error, "error_description": self.description,
                                                "state": self.state, "iss": issuer})


def redirect_url(uri: str, parameters: Mapping[str, str | None]) -> str:
    query = urlencode({name: value for name, value in parameters.items() if value is not None})
    return f"{uri}{'&' if '?' in uri else '?'}{query}" if query else uri


def authorization_request(params: Mapping[str, Sequence[str]], clients: Mapping[str, OidcClient]
                          ) -> AuthorizationRequest:
    """The validated request, or UntrustedRedirect / AuthorizationDenied."""
    def one(name: str) -> str | None:
        values = params.get(name, ())
        return values[0] if len(values) == 1 else None

    client = clients.get(one("client_id") or "")
    if client is None:
        raise UntrustedRedirect("the application (client_id) is not registered")
    redirect_uri = one("redirect_uri")
    if redirect_uri is None or redirect_uri not in client.redirect_uris:
        raise UntrustedRedirect("the return address (redirect_uri) is not registered for this application")
    state = one("state")

    def denied(error: str, description: str) -> AuthorizationDenied:
        return AuthorizationDenied(error, description, redirect_uri, state)

    if repeated := [name for name in _SINGLE if len(params.get(name, ())) > 1]:
        raise denied("invalid_request", f"{repeated[0]} is repeated")
    if "request" in params:
        raise denied("request_not_supported", "request objects are not supported")
    if "request_uri" in params:
        raise denied("request_uri_not_supported", "request_uri is not supported")
    if (too_long := [n for n, limit in _LIMITS.items() if len(one(n) or "") > limit]):
        raise denied("invalid_request", f"{too_long[0]} is too long")
    if one("response_mode") not in (None, "query"):
        raise denied("invalid_request", "only response_mode=query is supported")
    if one("response_type") != "code":
        raise denied("unsupported_response_type", "only response_type=code is supported")
    scope = one("scope") or ""
    if "openid" not in scope.split():
        raise denied("invalid_scope", "the scope must include openid")
    challenge = one("code_challenge")
    if challenge is None:
        raise denied("invalid_request", "code_challenge is required (PKCE, RFC 7636)")
    if one("code_challenge_method") != "S256":
        raise denied("invalid_request", "code_challenge_method must be S256; plain is not accepted")
    if not _S256_CHALLENGE.fullmatch(challenge):
        raise denied("invalid_request", "code_challenge is not an S256 challenge")
    if "none" in (one("prompt") or "").split():  # no single sign-on session here: always a fresh sign-in
        raise denied("login_required", "the user must sign in")
    return AuthorizationRequest(client_id=client.client_id, redirect_uri=redirect_uri, scope=scope,
                                code_challenge=challenge, state=state, nonce=one("nonce"),
                                login_hint=one("login_hint"))


class InvalidSignInForm(Exception):
    pass


class SignInFormExpired(Exception):
    pass


def sign_in_form_id(box: SecretBox, request: AuthorizationRequest, now: datetime) -> str:
    """Opaque and authenticated: when issued, and for which request. The form must come back with it."""
    return box.seal(json.dumps({"at": now.timestamp(), "request": _digest(request)}), bound_to=_FORM_PURPOSE)


def check_sign_in_form_id(box: SecretBox, form_id: str, request: AuthorizationRequest, now: datetime,
                          lifetime: timedelta) -> None:
    try:
        content = json.loads(box.open(form_id, bound_to=_FORM_PURPOSE))
        issued, digest = float(content["at"]), str(content["request"])
    except (ValueError, KeyError, TypeError):
        raise InvalidSignInForm("the sign-in form is not valid") from None
    if digest != _digest(request):
        raise InvalidSignInForm("the sign-in form was altered")
    if not 0 <= now.timestamp() - issued <= lifetime.total_seconds():
        raise SignInFormExpired("the sign-in form has expired")


def _digest(request: AuthorizationRequest) -> str:
    fields = {k: v for k, v in asdict(request).items() if k != "login_hint"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


async def sign_in(uow: IdentityUnitOfWork, deps: Dependencies, provider: Provider, request: AuthorizationRequest,
                  *, email: str, password: str, totp_code: str | None, backup_code: str | None, address: str,
                  user_agent: str, now: datetime) -> str:
    """Sign the user in and answer the client's redirect_uri with a single-use code (and state, and iss)."""
    pair = await handlers.login(uow, deps, email=email, password=password, totp_code=totp_code,
                                backup_code=backup_code, address=address, user_agent=user_agent, now=now)
    session = await uow.session.get(SessionRow, pair.session_id)
    assert session is not None
    code = new_opaque_token()
    digest = token_digest(code)
    await uow.session.execute(sa.delete(AuthorizationCodeRow).where(
        col(AuthorizationCodeRow.expires_at) < now - _KEEP_CODES))
    uow.session.add(AuthorizationCodeRow(
        digest=digest, client_id=request.client_id, redirect_uri=request.redirect_uri,
        code_challenge=request.code_challenge, nonce=request.nonce, scope=request.granted_scope,
        user_id=session.user_id, session_id=session.id,
        refresh_token_sealed=provider.box.seal(pair.refresh_token, bound_to=digest),
        created_at=now, expires_at=now + provider.code_lifetime))
    await uow.commit()
    return redirect_url(request.redirect_uri, {"code": code, "state": request.state, "iss": provider.issuer})


class TokenRequestError(Exception):
    """RFC 6749 §5.2."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


@dataclass(frozen=True)
class OidcTokens:
    access_token: str
    expires_at: datetime
    refresh_token: str
    id_token: str
    scope: str


def _client(provider: Provider, client_id: str) -> OidcClient:
    client = provider.clients.get(client_id)
    if client is None:
        raise TokenRequestError("invalid_client", "the client is not registered", 401)
    return client


async def exchange_code(uow: IdentityUnitOfWork, deps: Dependencies, provider: Provider, *, client_id: str,
                        code: str, redirect_uri: str, code_verifier: str, now: datetime) -> OidcTokens:
    _client(provider, client_id)
    row = await uow.session.get(AuthorizationCodeRow, token_digest(code))
    if row is None:
        raise TokenRequestError("invalid_grant", "the authorization code is not valid")
    claimed = cast(CursorResult[Any], await uow.session.execute(
        sa.update(AuthorizationCodeRow).where(col(AuthorizationCodeRow.digest) == row.digest,
                                              col(AuthorizationCodeRow.used_at).is_(None))
        .values(used_at=now, refresh_token_sealed=None).execution_options(synchronize_session=False)))
    sealed, row.refresh_token_sealed = row.refresh_token_sealed, None
    await uow.commit()
    if claimed.rowcount != 1:
        # RFC 6749 §4.1.2: a code used twice was stolen or replayed; revoke what it gave.
        await handlers.logout(uow, deps, session_id=row.session_id, now=now)
        raise TokenRequestError("invalid_grant", "the authorization code was already used; its session has ended")
    problem = ("the authorization code was issued to another client" if row.client_id != client_id else
               "redirect_uri differs from the authorization request" if row.redirect_uri != redirect_uri else
               "the authorization code has expired" if aware(row.expires_at) <= now else
               "the code_verifier does not match the code_challenge"
               if not pkce_s256_matches(code_verifier, row.code_challenge) else None)
    if problem or sealed is None:
        # The session was started for this code alone, and no tokens of it have left identity.
        await handlers.logout(uow, deps, session_id=row.session_id, now=now)
        raise TokenRequestError("invalid_grant", problem or "the authorization code is not valid")
    try:
        pair = await handlers.refresh(uow, deps, refresh_token=provider.box.open(sealed, bound_to=row.digest),
                                      now=now)
    except (InvalidRefreshToken, SessionEnded) as error:
        raise TokenRequestError("invalid_grant", str(error)) from None
    return await _with_id_token(uow, deps, provider, pair, client_id=row.client_id, scope=row.scope,
                                nonce=row.nonce, now=now)


async def refresh(uow: IdentityUnitOfWork, deps: Dependencies, provider: Provider, *, client_id: str,
                  refresh_token: str, scope: str | None, now: datetime) -> OidcTokens:
    _client(provider, client_id)
    token = await uow.session.get(RefreshTokenRow, token_digest(refresh_token))
    code = None if token is None else (await uow.session.execute(
        select(AuthorizationCodeRow).where(AuthorizationCodeRow.session_id == token.session_id)
        .order_by(col(AuthorizationCodeRow.created_at).desc()).limit(1))).scalar_one_or_none()
    if code is None or code.client_id != client_id:
        raise TokenRequestError("invalid_grant", "the refresh token was not issued to this client")
    if scope is not None and not set(scope.split()) <= set(code.scope.split()):
        raise TokenRequestError("invalid_scope", "a refresh may not widen the scope")
    try:
        pair = await handlers.refresh(uow, deps, refresh_token=refresh_token, now=now)
    except (InvalidRefreshToken, SessionEnded) as error:
        raise TokenRequestError("invalid_grant", str(error)) from None
    return await _with_id_token(uow, deps, provider, pair, client_id=client_id, scope=scope or code.scope,
                                nonce=code.nonce, now=now)


async def _with_id_token(uow: IdentityUnitOfWork, deps: Dependencies, provider: Provider,
                         pair: handlers.TokenPair, *, client_id: str, scope: str, nonce: str | None,
                         now: datetime) -> OidcTokens:
    session = await uow.session.get(SessionRow, pair.session_id)
    assert session is not None
    user = await uow.session.get(UserRow, session.user_id)
    assert user is not None
    access = pair.access.token
    claims: dict[str, Any] = {
        "iss": provider.issuer, "sub": str(user.id), "aud": client_id, "iat": int(now.timestamp()),
        "exp": int((now + deps.access_lifetime).timestamp()),
        # The original sign-in's time on every ID token of the session (OIDC Core §12.2).
        "auth_time": int(aware(session.started_at).timestamp()), "sid": str(session.id), "amr": list(session.amr),
        "email": user.email, "name": user.full_name,
        "at_hash": _b64url(hashlib.sha256(access.encode()).digest()[:16]),
    }
    if nonce is not None:
        claims["nonce"] = nonce
    signer = await provider.keys.signer(uow, now)
    return OidcTokens(access_token=access, expires_at=pair.access.expires_at, refresh_token=pair.refresh_token,
                      id_token=signer.sign(claims), scope=scope)


async def userinfo(uow: IdentityUnitOfWork, session_id: UUID, now: datetime) -> dict[str, Any]:
    _, user, _ = await handlers.active_session(uow, session_id, now)
    return {"sub": str(user.id), "email": user.email, "name": user.full_name,
            "organization": str(user.organization_id), "roles": sorted(user.roles)}


class LogoutRefused(Exception):
    pass


async def end_session(uow: IdentityUnitOfWork, deps: Dependencies, provider: Provider, *,
                      id_token_hint: str | None, client_id: str | None, post_logout_redirect_uri: str | None,
                      state: str | None, now: datetime) -> str | None:
    """OpenID Connect RP-Initiated Logout 1.0: end the hinted session; where to send the user, if anywhere."""
    session_id = None
    if id_token_hint:
        claims = await provider.keys.verified_claims(uow, id_token_hint, provider.issuer)
        if client_id is not None and claims["aud"] != client_id:
            raise LogoutRefused("id_token_hint was issued to another application")
        client_id, session_id = claims["aud"], UUID(claims["sid"])
    if post_logout_redirect_uri is not None:
        client = provider.clients.get(client_id or "")
        if client is None or post_logout_redirect_uri not in client.post_logout_redirect_uris:
            raise LogoutRefused("the return address (post_logout_redirect_uri) is not registered")
    if session_id is not None:
        await handlers.logout(uow, deps, session_id=session_id, now=now)
    if post_logout_redirect_uri is None:
        return None
    return redirect_url(post_logout_redirect_uri, {"state": state})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rsa_public_jwk(private_key: rsa.RSAPrivateKey) -> dict[str, str]:
    numbers = private_key.public_key().public_numbers()
    members = {"e": _b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")), "kty": "RSA",
               "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"))}
    thumbprint = _b64url(hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest())
    return {**members, "kid": thumbprint, "alg": "RS256", "use": "sig"}  # kid: RFC 7638 thumbprint


def new_id_token_key(box: SecretBox, now: datetime) -> IdTokenKeyRow:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    jwk = rsa_public_jwk(private_key)
    return IdTokenKeyRow(kid=jwk["kid"], private_key_sealed=box.seal(pem), public_jwk=jwk, created_at=now)


class IdTokenSigner:
    def __init__(self, key: IdTokenKeyRow, box: SecretBox) -> None:
        self.kid = key.kid
        self._private = serialization.load_pem_private_key(box.open(key.private_key_sealed).encode(), password=None)

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._private, algorithm="RS256",  # type: ignore[arg-type]
                          headers={"kid": self.kid, "typ": "JWT"})


class IdTokenKeys:
    """The RSA key that signs ID tokens, cached for a minute like the access-token key ring."""

    def __init__(self, box: SecretBox, cache_seconds: float = 60) -> None:
        self.box = box
        self.cache_seconds = cache_seconds
        self._signer: IdTokenSigner | None = None
        self._loaded_at = 0.0

    async def signer(self, uow: IdentityUnitOfWork, now: datetime) -> IdTokenSigner:
        if self._signer is None or time.monotonic() - self._loaded_at > self.cache_seconds:
            self._signer = IdTokenSigner(await self.active_key(uow, now), self.box)
            self._loaded_at = time.monotonic()
        return self._signer

    async def active_key(self, uow: IdentityUnitOfWork, now: datetime) -> IdTokenKeyRow:
        key = (await uow.session.execute(
            select(IdTokenKeyRow).where(col(IdTokenKeyRow.retired_at).is_(None))
            .order_by(col(IdTokenKeyRow.created_at).desc()).limit(1))).scalar_one_or_none()
        if key is None:
            key = new_id_token_key(self.box, now)
            uow.session.add(key)
            await uow.commit()
        return key

    async def rotate(self, uow: IdentityUnitOfWork, now: datetime) -> IdTokenKeyRow:
        for old in (await uow.session.execute(
                select(IdTokenKeyRow).where(col(IdTokenKeyRow.retired_at).is_(None)))).scalars():
            old.retired_at = now
        key = new_id_token_key(self.box, now)
        uow.session.add(key)
        await uow.commit()
        self._signer = None
        return key

    async def due_for_rotation(self, uow: IdentityUnitOfWork, now: datetime, every: timedelta) -> bool:
        return aware((await self.active_key(uow, now)).created_at) + every <= now

    async def verified_claims(self, uow: IdentityUnitOfWork, token: str, issuer: str) -> dict[str, Any]:
        """The claims of an ID token identity signed, expired or not (a logout hint may be old)."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = await uow.session.get(IdTokenKeyRow, kid) if isinstance(kid, str) and len(kid) <= 64 else None
            if key is None:
                raise LogoutRefused("id_token_hint was not signed by this provider")
            claims: dict[str, Any] = jwt.decode(
                token, jwt.PyJWK(key.public_jwk).key, algorithms=["RS256"], issuer=issuer,
                options={"verify_exp": False, "verify_aud": False, "require": ["sub", "aud", "sid"]})
            if not isinstance(claims["aud"], str):
                raise LogoutRefused("id_token_hint has an unexpected audience")
            UUID(str(claims["sid"]))
        except (jwt.PyJWTError, ValueError):
            raise LogoutRefused("id_token_hint is not a valid ID token of this provider") from None
        return claims
