"""Verifying the JWTs identity issues (RFC 7519, RFC 8725 best practices, RFC 9068 access tokens).

Only EdDSA (Ed25519, RFC 8037) is accepted, and the header is checked before any key is used, so
``none`` and the HS256-with-the-public-key confusion never reach a verifier. The key comes only from
identity's JWK set by ``kid``; ``jku``, ``x5u`` and ``jwk`` headers are never consulted. Claims are
read only after the signature verified (OWASP ASVS 5.0 V9.1.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from uuid import UUID

import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError

from radcommon.auth.jwks import JwksClient
from radcommon.contracts.identity import RoleValues

ACCESS_AUDIENCE = "telerad"
STEP_UP_AUDIENCE = "telerad-step-up"
#: The ``typ`` header each audience's tokens carry, so one kind cannot pass for the other.
TOKEN_TYPES = {ACCESS_AUDIENCE: "at+jwt", STEP_UP_AUDIENCE: "step-up+jwt"}
ALGORITHM = "EdDSA"
_REQUIRED = ["iss", "aud", "sub", "org", "roles", "sid", "email", "amr", "iat", "nbf", "exp", "jti"]
_MAX_TOKEN_CHARS = 8192
_MAX_KID_CHARS = 128

TokenErrorReason = Literal["malformed", "algorithm", "bad_type", "unknown_key", "bad_signature", "expired",
                           "not_yet_valid", "bad_issuer", "bad_audience", "bad_claims", "wrong_purpose",
                           "revoked"]


class TokenError(Exception):
    """The token is not acceptable; ``reason`` is one word, safe to tell the client."""

    def __init__(self, reason: TokenErrorReason) -> None:
        super().__init__(reason)
        self.reason: TokenErrorReason = reason


@dataclass(frozen=True)
class Principal:
    """Who made the request, as the verified token says."""

    user_id: UUID
    organization_id: UUID
    roles: frozenset[RoleValues]
    session_id: UUID
    email: str
    amr: tuple[str, ...]
    token_id: str
    expires_at: datetime
    purpose: str | None = None

    def has_any(self, *roles: RoleValues) -> bool:
        return not self.roles.isdisjoint(roles)


class RevocationList(Protocol):
    async def is_revoked(self, session_id: UUID) -> bool: ...


class TokenVerifier:
    def __init__(self, jwks: JwksClient, *, issuer: str, audience: str = ACCESS_AUDIENCE,
                 revocations: RevocationList | None = None, leeway_seconds: float = 5) -> None:
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.revocations = revocations
        self.leeway_seconds = leeway_seconds

    async def verify(self, token: str, *, audience: str | None = None, purpose: str | None = None) -> Principal:
        """The principal of a valid token for ``audience`` (and ``purpose``, when given).

        Raises only :class:`TokenError`, whatever the input; a failing revocation store propagates
        its own error (the request should fail as unavailable, not as unauthenticated).
        """
        audience = audience or self.audience
        kid = _checked_header(token, audience)
        key = await self.jwks.key(kid)
        if key is None:
            raise TokenError("unknown_key")
        principal = _principal(self._verified_claims(token, key, audience))
        if purpose is not None and principal.purpose != purpose:
            raise TokenError("wrong_purpose")
        if self.revocations is not None and await self.revocations.is_revoked(principal.session_id):
            raise TokenError("revoked")
        return principal

    def _verified_claims(self, token: str, key: Any, audience: str) -> dict[str, Any]:
        try:
            return jwt.decode(token, key, algorithms=[ALGORITHM], audience=audience, issuer=self.issuer,
                              leeway=self.leeway_seconds, options={"require": _REQUIRED, "strict_aud": True})
        except jwt.InvalidSignatureError:
            raise TokenError("bad_signature") from None
        except jwt.ExpiredSignatureError:
            raise TokenError("expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("not_yet_valid") from None
        except jwt.InvalidAudienceError:
            raise TokenError("bad_audience") from None
        except jwt.InvalidIssuerError:
            raise TokenError("bad_issuer") from None
        except jwt.InvalidAlgorithmError:
            raise TokenError("algorithm") from None
        except (jwt.MissingRequiredClaimError, jwt.InvalidIssuedAtError, InvalidSubjectError,
                InvalidJTIError):
            raise TokenError("bad_claims") from None
        except Exception:  # DecodeError and whatever else a hostile string can provoke
            raise TokenError("malformed") from None


def _checked_header(token: object, audience: str) -> str:
    """The header's ``kid`` once the header is acceptable; nothing here is trusted yet."""
    if not isinstance(token, str) or not 0 < len(token) <= _MAX_TOKEN_CHARS:
        raise TokenError("malformed")
    try:
        header = jwt.get_unverified_header(token)
    except Exception:
        raise TokenError("malformed") from None
    if header.get("alg") != ALGORITHM:
        raise TokenError("algorithm")
    if "crit" in header or "b64" in header:  # extensions identity never uses (RFC 7515 4.1.11, RFC 7797)
        raise TokenError("malformed")
    expected = TOKEN_TYPES.get(audience)
    typ = header.get("typ")
    if expected is not None and (not isinstance(typ, str) or typ.lower().removeprefix("application/") != expected):
        raise TokenError("bad_type")
    kid = header.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= _MAX_KID_CHARS:
        raise TokenError("unknown_key")
    return kid


def _principal(claims: dict[str, Any]) -> Principal:
    try:
        roles, amr, purpose = claims["roles"], claims["amr"], claims.get("purpose")
        if not isinstance(roles, list) or not isinstance(amr, list) or not all(isinstance(m, str) for m in amr):
            raise TypeError
        if not isinstance(claims["email"], str) or not isinstance(claims["jti"], str) or not claims["jti"]:
            raise TypeError
        if purpose is not None and not isinstance(purpose, str):
            raise TypeError
        for name in ("iat", "nbf", "exp"):
            if not _numeric_date(claims[name]):
                raise TypeError
        return Principal(
            user_id=_uuid(claims["sub"]), organization_id=_uuid(claims["org"]),
            roles=frozenset(RoleValues(_str(role)) for role in roles), session_id=_uuid(claims["sid"]),
            email=claims["email"], amr=tuple(amr), token_id=claims["jti"],
            expires_at=datetime.fromtimestamp(claims["exp"], UTC), purpose=purpose)
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        raise TokenError("bad_claims") from None


def _numeric_date(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def _uuid(value: object) -> UUID:
    return UUID(_str(value))
