from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from radcommon.contracts import SignatureMeaningValues

KID = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class SignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    report_id: UUID
    version: int = Field(ge=1, le=2**31 - 1)
    addendum_id: UUID | None = Field(default=None, description="sign this addendum's version, not the report's")
    meaning: SignatureMeaningValues


class Manifestation(BaseModel):
    printed_name: str
    signed_at: str = Field(description="ISO 8601, UTC")
    meaning: SignatureMeaningValues
    text: str = Field(description="the line every rendering of the signed record shows")


class SignatureView(BaseModel):
    signature_id: UUID
    organization_id: UUID
    report_id: UUID
    version: int
    addendum_id: UUID | None
    content_sha256: str
    signer_id: UUID
    signer_name: str
    meaning: SignatureMeaningValues
    signed_at: str
    key_id: str
    algorithm: str
    accession_number: str | None
    study_instance_uid: str | None
    manifest: dict[str, Any] | None = Field(description="the object whose RFC 8785 canonical bytes were signed")
    signature: str = Field(description="Ed25519 signature over the manifest's canonical bytes, base64")
    manifestation: Manifestation


class SignatureList(BaseModel):
    signatures: list[SignatureView]


class SignaturesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    report_id: UUID


class VerificationProblemView(BaseModel):
    code: str = Field(description="content_changed, manifest_changed, manifest_malformed, signature_invalid, "
                                  "signature_malformed, key_unknown, key_mismatch, key_revoked, "
                                  "algorithm_unsupported")
    detail: str
    revoked_at: str | None = None


class VerificationView(BaseModel):
    valid: bool
    problems: list[VerificationProblemView]
    signature: dict[str, Any]


class ValidateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    manifest: dict[str, Any] = Field(description="the signed manifest object, as GET /signatures/{id} gives it")
    signature: str = Field(max_length=200, description="base64")
    key_id: str = KID
    content: dict[str, Any] | None = Field(default=None, description="when given, its RFC 8785 SHA-256 must be "
                                                                     "the manifest's content_sha256")


class KeyView(BaseModel):
    kid: str
    algorithm: str
    status: str = Field(description="signing, retired or revoked")
    public_key: str = Field(description="raw Ed25519 public key, base64")
    jwk: dict[str, str] = Field(description="the same key as a JWK (RFC 8037 OKP)")
    created_at: str
    retired_at: str | None
    revoked_at: str | None
    revocation_reason: str | None


class KeyList(BaseModel):
    keys: list[KeyView]


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)


class AuditActor(BaseModel):
    id: UUID | None
    name: str


class AuditEntryView(BaseModel):
    action: str = Field(description="signed, refused, key_retired, key_revoked")
    occurred_at: str
    actor: AuditActor
    report_id: UUID
    version: int | None = None
    addendum_id: UUID | None = None
    content_sha256: str | None = None
    meaning: SignatureMeaningValues | None = None
    signature_id: UUID | None = None
    signature_ids: list[UUID] | None = Field(default=None, description="for key events: the signatures of this "
                                                                         "report the key made")
    key_id: str | None = None
    reason: str | None = None
    detail: str | None = None


class AuditTrail(BaseModel):
    report_id: UUID
    entries: list[AuditEntryView]
