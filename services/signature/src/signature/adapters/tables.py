from __future__ import annotations

from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

#: ``addendum_key`` is the addendum's id, or "" for the report itself: key columns cannot be NULL.
REPORT_ITSELF = ""


def _moment(nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(sa.DateTime(timezone=True), nullable=nullable)


class SignableVersionRow(SQLModel, table=True):
    """Each submitted version, as reporting sent it; versions are never deleted (signatures name them)."""

    __tablename__ = "signable_versions"

    organization_id: UUID = Field(primary_key=True)
    report_id: UUID = Field(primary_key=True)
    addendum_key: str = Field(primary_key=True, max_length=36)
    version: int = Field(primary_key=True)
    content: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    content_sha256: str = Field(max_length=64)
    author_id: UUID
    accession_number: str = Field(default="", max_length=16)
    study_instance_uid: str = Field(max_length=64)
    submitted_at: datetime = Field(sa_column=_moment(nullable=False))


class SignatureRow(SQLModel, table=True):
    __tablename__ = "signatures"
    __table_args__ = (
        sa.UniqueConstraint("organization_id", "report_id", "addendum_key", "version", "signer_id", "meaning"),
        sa.Index("signatures_one_author", "organization_id", "report_id", "addendum_key", "version", unique=True,
                 postgresql_where=sa.text("meaning = 'authored'"), sqlite_where=sa.text("meaning = 'authored'")),
    )

    id: UUID = Field(primary_key=True)
    organization_id: UUID = Field(index=True)
    report_id: UUID
    addendum_key: str = Field(max_length=36)
    version: int
    content_sha256: str = Field(max_length=64)
    signer_id: UUID
    signer_name: str = Field(max_length=200)
    meaning: str = Field(max_length=16)
    signed_at: datetime = Field(sa_column=_moment(nullable=False))
    key_id: str = Field(max_length=64, index=True)
    algorithm: str = Field(max_length=16)
    manifest: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    signature: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))


class SignerRow(SQLModel, table=True):
    """Printed names (21 CFR 11.50(a)(1)), projected from identity's user.registered events."""

    __tablename__ = "signers"

    organization_id: UUID = Field(primary_key=True)
    user_id: UUID = Field(primary_key=True)
    full_name: str = Field(default="", max_length=200)
    email: str = Field(default="", max_length=254)


class SigningKeyRow(SQLModel, table=True):
    """The key ring: rotated, revoked, never deleted. The private half is sealed (SecretBox, bound to kid)."""

    __tablename__ = "signature_keys"

    kid: str = Field(primary_key=True, max_length=64)
    algorithm: str = Field(max_length=16)
    public_key: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    private_key_sealed: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime = Field(sa_column=_moment(nullable=False))
    retired_at: datetime | None = Field(default=None, sa_column=_moment())
    revoked_at: datetime | None = Field(default=None, sa_column=_moment())
    revocation_reason: str = Field(default="", max_length=500)


class KeyEventRow(SQLModel, table=True):
    """What happened to a key, by whom: created, retired (rotation), revoked."""

    __tablename__ = "signature_key_events"

    id: int | None = Field(default=None, primary_key=True)
    kid: str = Field(max_length=64, index=True)
    action: str = Field(max_length=16)
    actor_id: UUID | None = None
    actor_organization_id: UUID | None = None
    actor_name: str = Field(default="", max_length=254)
    reason: str = Field(default="", max_length=500)
    occurred_at: datetime = Field(sa_column=_moment(nullable=False))


class UsedStepUpRow(SQLModel, table=True):
    """Step-up tokens already spent (``jti``), kept until they would have expired anyway."""

    __tablename__ = "used_step_up_tokens"

    token_id: str = Field(primary_key=True, max_length=255)
    user_id: UUID
    organization_id: UUID
    used_at: datetime = Field(sa_column=_moment(nullable=False))
    expires_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, index=True))


class AuditRow(SQLModel, table=True):
    """The signature audit trail (21 CFR 11.10(e)): append-only, one row per signing or refusal."""

    __tablename__ = "signature_audit"
    __table_args__ = (sa.Index("signature_audit_report", "organization_id", "report_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    organization_id: UUID
    report_id: UUID
    addendum_key: str = Field(max_length=36)
    version: int
    action: str = Field(max_length=16)
    reason: str = Field(default="", max_length=64)
    detail: str = Field(default="", max_length=500)
    signature_id: UUID | None = None
    actor_id: UUID
    actor_name: str = Field(max_length=254)
    meaning: str = Field(max_length=16)
    content_sha256: str = Field(default="", max_length=64)
    key_id: str = Field(default="", max_length=64)
    occurred_at: datetime = Field(sa_column=_moment(nullable=False))
