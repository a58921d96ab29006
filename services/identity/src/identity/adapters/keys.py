"""Token signing keys (Ed25519) and the JWTs identity issues with them (RFC 7519, RFC 8037).

Keys are rotated on a schedule and on demand, never deleted: a retired key stays in the JWKS until
every token it signed has expired, and its row stays for the record.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID, uuid4

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from identity.adapters.tables import SigningKeyRow
from identity.domain.totp import SecretBox

ACCESS_AUDIENCE = "telerad"
STEP_UP_AUDIENCE = "telerad-step-up"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(private_key: Ed25519PrivateKey) -> dict[str, str]:
    raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    members = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
    thumbprint = _b64url(hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest())
    return {**members, "kid": thumbprint, "alg": "EdDSA", "use": "sig"}  # kid: RFC 7638 thumbprint


def new_signing_key(box: SecretBox, now: datetime) -> SigningKeyRow:
    private_key = Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    jwk = public_jwk(private_key)
    return SigningKeyRow(kid=jwk["kid"], private_key_sealed=box.seal(pem), public_jwk=jwk, created_at=now)


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime
    token_id: str


class TokenIssuer:
    def __init__(self, key: SigningKeyRow, box: SecretBox, issuer: str) -> None:
        self.kid = key.kid
        self.issuer = issuer
        self._private = serialization.load_pem_private_key(box.open(key.private_key_sealed).encode(), password=None)

    def issue(self, *, user_id: UUID, organization_id: UUID, roles: list[str], session_id: UUID, email: str,
              amr: list[str], now: datetime, lifetime: timedelta, audience: str = ACCESS_AUDIENCE,
              purpose: str | None = None) -> IssuedToken:
        expires_at = now + lifetime
        token_id = str(uuid4())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": audience, "sub": str(user_id), "org": str(organization_id),
            "roles": sorted(roles), "sid": str(session_id), "email": email, "amr": amr,
            "iat": int(now.timestamp()), "nbf": int(now.timestamp()), "exp": int(expires_at.timestamp()),
            "jti": token_id,
        }
        if purpose:
            claims["purpose"] = purpose
        typ = "at+jwt" if audience == ACCESS_AUDIENCE else "step-up+jwt"
        token = jwt.encode(claims, self._private, algorithm="EdDSA",  # type: ignore[arg-type]
                           headers={"kid": self.kid, "typ": typ})
        return IssuedToken(token, expires_at, token_id)


class PublishedKey(Protocol):
    """A signing key row of any kind: Ed25519 for access tokens, RSA for OpenID Connect ID tokens."""

    @property
    def public_jwk(self) -> dict[str, str]: ...

    @property
    def retired_at(self) -> datetime | None: ...


def jwks(keys: Sequence[PublishedKey], now: datetime, keep_retired_for: timedelta) -> dict[str, Any]:
    """The public keys a verifier may meet: the active one, and retired ones whose tokens may still live."""
    def live(key: PublishedKey) -> bool:
        retired = key.retired_at
        if retired is None:
            return True
        retired = retired if retired.tzinfo else retired.replace(tzinfo=UTC)
        return retired + keep_retired_for > now
    return {"keys": [dict(key.public_jwk) for key in keys if live(key)]}
