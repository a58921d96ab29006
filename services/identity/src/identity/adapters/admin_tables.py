from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def _aware(nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(sa.DateTime(timezone=True), nullable=nullable)


class InvitationRow(SQLModel, table=True):
    """A pending (or accepted) invitation; the token itself is never stored, only its SHA-256 digest."""

    __tablename__ = "invitations"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    digest: str = Field(max_length=64, unique=True)
    organization_id: UUID = Field(foreign_key="organizations.id", index=True)
    email: str = Field(max_length=254, index=True)
    role: str = Field(max_length=32)
    invited_by: UUID
    created_at: datetime = Field(sa_column=_aware())
    expires_at: datetime = Field(sa_column=_aware())
    accepted_at: datetime | None = Field(default=None, sa_column=_aware(nullable=True))
    user_id: UUID | None = None


class PasswordResetRow(SQLModel, table=True):
    __tablename__ = "password_resets"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    digest: str = Field(max_length=64, unique=True)
    user_id: UUID = Field(foreign_key="users.id", index=True)
    organization_id: UUID
    created_at: datetime = Field(sa_column=_aware())
    expires_at: datetime = Field(sa_column=_aware())
    used_at: datetime | None = Field(default=None, sa_column=_aware(nullable=True))
