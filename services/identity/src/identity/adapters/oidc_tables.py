from __future__ import annotations

from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def _aware(nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(sa.DateTime(timezone=True), nullable=nullable)


class AuthorizationCodeRow(SQLModel, table=True):
    """One authorization code (RFC 6749 §4.1), kept as its digest; single use, one minute."""

    __tablename__ = "oidc_authorization_codes"

    digest: str = Field(primary_key=True, max_length=64)
    client_id: str = Field(max_length=128)
    redirect_uri: str = Field(max_length=2000)
    code_challenge: str = Field(max_length=128)
    nonce: str | None = Field(default=None, max_length=512)
    scope: str = Field(max_length=256)
    user_id: UUID = Field(foreign_key="users.id", index=True)
    session_id: UUID = Field(foreign_key="sessions.id", index=True)
    #: The session's first refresh token, sealed to this code; the exchange rotates it and clears this.
    refresh_token_sealed: str | None = Field(default=None, max_length=512)
    created_at: datetime = Field(sa_column=_aware())
    expires_at: datetime = Field(sa_column=_aware())
    used_at: datetime | None = Field(default=None, sa_column=_aware(nullable=True))


class IdTokenKeyRow(SQLModel, table=True):
    """RSA-2048 keys that sign ID tokens (RS256, the algorithm OpenID Connect requires); rotated, never deleted."""

    __tablename__ = "oidc_signing_keys"

    kid: str = Field(primary_key=True, max_length=64)
    private_key_sealed: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    public_jwk: dict[str, str] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    created_at: datetime = Field(sa_column=_aware())
    retired_at: datetime | None = Field(default=None, sa_column=_aware(nullable=True))
