"""Ed25519 signing keys (RFC 8032): made here, sealed at rest, published as JWKs (RFC 8037).

The key id is the RFC 7638 thumbprint of the public JWK, so anyone holding the public key can
recompute it, and no two keys share one.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime
from uuid import UUID

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from signature.adapters.repository import as_utc
from signature.adapters.secret_box import SecretBox
from signature.adapters.tables import KeyEventRow, SigningKeyRow
from signature.domain.model import ALGORITHM
from signature.domain.verification import PublicKey


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(public_key: bytes) -> dict[str, str]:
    members = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(public_key)}
    thumbprint = _b64url(hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest())
    return {**members, "kid": thumbprint, "alg": "EdDSA", "use": "sig"}


def new_signing_key(box: SecretBox, now: datetime) -> SigningKeyRow:
    private_key = Ed25519PrivateKey.generate()
    public = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    raw = private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption())
    kid = public_jwk(public)["kid"]
    return SigningKeyRow(kid=kid, algorithm=ALGORITHM, public_key=public,
                         private_key_sealed=box.seal(raw, bound_to=kid), created_at=now)


def open_private_key(row: SigningKeyRow, box: SecretBox) -> Ed25519PrivateKey:
    private_key = Ed25519PrivateKey.from_private_bytes(box.open(row.private_key_sealed, bound_to=row.kid))
    public = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if public != row.public_key:
        raise ValueError(f"the sealed private key of {row.kid} does not match its public key")
    return private_key


def verification_key(row: SigningKeyRow) -> PublicKey:
    revoked_at = None if row.revoked_at is None else as_utc(row.revoked_at)
    return PublicKey(row.kid, row.public_key, revoked_at, row.revocation_reason)


class SqlKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, kid: str) -> SigningKeyRow | None:
        return await self.session.get(SigningKeyRow, kid)

    async def signing(self) -> list[SigningKeyRow]:
        """Keys that may sign (neither retired nor revoked), newest first."""
        return list((await self.session.execute(
            select(SigningKeyRow).where(col(SigningKeyRow.retired_at).is_(None),
                                        col(SigningKeyRow.revoked_at).is_(None))
            .order_by(col(SigningKeyRow.created_at).desc()))).scalars())

    async def all(self) -> list[SigningKeyRow]:
        return list((await self.session.execute(
            select(SigningKeyRow).order_by(col(SigningKeyRow.created_at)))).scalars())

    def add(self, row: SigningKeyRow) -> None:
        self.session.add(row)

    def record(self, kid: str, action: str, now: datetime, actor: tuple[UUID | None, UUID | None, str],
               reason: str = "") -> None:
        """``actor``: user id, their organisation, printed name (no ids for the schedule)."""
        actor_id, actor_organization_id, actor_name = actor
        self.session.add(KeyEventRow(kid=kid, action=action, actor_id=actor_id,
                                     actor_organization_id=actor_organization_id, actor_name=actor_name[:254],
                                     reason=reason[:500], occurred_at=now))
