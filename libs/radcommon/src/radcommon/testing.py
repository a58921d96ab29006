"""Fakes other services' tests use: a token minter with its own key, as identity would sign."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from radcommon.auth import ACCESS_AUDIENCE, STEP_UP_AUDIENCE, TOKEN_TYPES, JwksClient, TokenVerifier
from radcommon.contracts import RoleValues

ISSUER = "http://telerad.test"


class TokenMinter:
    """Signs tokens like identity does, with a key of its own; ``verifier()`` trusts exactly that key."""

    def __init__(self, issuer: str = ISSUER, kid: str = "test-key") -> None:
        self.issuer, self.kid = issuer, kid
        self.key = Ed25519PrivateKey.generate()

    @property
    def jwks(self) -> dict[str, Any]:
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA", "use": "sig"}]}

    def verifier(self, **kwargs: Any) -> TokenVerifier:
        return TokenVerifier(JwksClient.static(self.jwks), issuer=self.issuer, **kwargs)

    def token(self, *, organization_id: UUID, roles: Iterable[RoleValues] = (RoleValues.RADIOLOGIST,),
              user_id: UUID | None = None, session_id: UUID | None = None, lifetime: timedelta = timedelta(minutes=5),
              audience: str = ACCESS_AUDIENCE, purpose: str | None = None, **claims: Any) -> str:
        now = datetime.now(UTC)
        payload: dict[str, Any] = {
            "iss": self.issuer, "aud": audience, "sub": str(user_id or uuid4()), "org": str(organization_id),
            "roles": sorted(r.value for r in roles), "sid": str(session_id or uuid4()), "email": "user@telerad.test",
            "amr": ["pwd"] if audience == ACCESS_AUDIENCE else ["pwd", "otp"], "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()), "exp": int((now + lifetime).timestamp()), "jti": str(uuid4()), **claims}
        if purpose or audience == STEP_UP_AUDIENCE:
            payload["purpose"] = purpose or "sign"
        return jwt.encode(payload, self.key, algorithm="EdDSA", headers={"kid": self.kid, "typ": TOKEN_TYPES[audience]})

    def bearer(self, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(**kwargs)}"}
