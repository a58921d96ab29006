from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def _aware(nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(sa.DateTime(timezone=True), nullable=nullable)


class OrganizationRow(SQLModel, table=True):
    __tablename__ = "organizations"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    name: str = Field(max_length=200)
    slug: str = Field(max_length=64, unique=True)
    require_2fa_roles: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    idle_timeout_minutes: int = 30
    max_concurrent_sessions: int = 5
    password_min_length: int = 12
    created_at: datetime = Field(sa_column=_aware())


class UserRow(SQLModel, table=True):
    __tablename__ = "users"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    organization_id: UUID = Field(foreign_key="organizations.id", index=True)
    email: str = Field(max_length=254, unique=True)
    full_name: str = Field(default="", max_length=200)
    password_hash: str = Field(max_length=512)
    roles: list[str] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    active: bool = True
    totp_secret_sealed: str | None = Field(default=None, max_length=512)
    totp_enabled: bool = False
    totp_last_step: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    failed_logins: int = 0
    last_failed_at: datetime | None = Field(default=None, sa_column=_aware(nullable=True))
    created_at: datetime = Field(sa_column=_aware())


class BackupCodeRow(SQLModel, table=True):
    __tablename__ = "backup_codes"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    user_id: UUID = Field(foreign_key="users.id", index=True)
    code_hash: str = Field(max_length=128)
    used_at: datetime | None = Field(default=None, sa_column=_aware(nullable=True))


class SessionRow(SQLModel, table=True):
    __tablename__ = "sessions"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    organization_id: UUID = Field(index=True)
    user_id: UUID = Field(foreign_key="users.id", index=True)
    amr: list[str] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    source_address: str = Field(default="", max_length=64)
    user_agent: str = Field(default="", max_length=256)
    started_at: datetime = Field(sa_column=_aware())
    last_seen_at: datetime = Field(sa_column=_aware())
    ended_at: datetime | None = Field(default=None, sa_column=_aware(nullable=True))
    end_reason: str | None = Field(default=None, max_length=32)


class RefreshTokenRow(SQLModel, table=True):
    __tablename__ = "refresh_tokens"

    digest: str = Field(primary_key=True, max_length=64)
    session_id: UUID = Field(foreign_key="sessions.id", index=True)
    issued_at: datetime = Field(sa_column=_aware())
    expires_at: datetime = Field(sa_column=_aware())
    used_at: datetime | None = Field(default=None, sa_column=_aware(nullable=True))


class SigningKeyRow(SQLModel, table=True):
    __tablename__ = "signing_keys"

    kid: str = Field(primary_key=True, max_length=64)
    private_key_sealed: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    public_jwk: dict[str, str] = Field(sa_column=sa.Column(sa.JSON, nullable=False))
    created_at: datetime = Field(sa_column=_aware())
    retired_at: datetime | None = Field(default=None, sa_column=_aware(nullable=True))


class AddressAttemptsRow(SQLModel, table=True):
    __tablename__ = "address_attempts"

    address: str = Field(primary_key=True, max_length=64)
    failures: int = 0
    last_failure_at: datetime = Field(sa_column=_aware())
