"""Events published by signature."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime, Field

from radcommon.contracts.envelope import Event


class SignatureMeaningValues(StrEnum):
    """What the signer means by signing (21 CFR 11.50(a)(3))."""

    AUTHORED = "authored"
    REVIEWED = "reviewed"
    APPROVED = "approved"


class ReportSignedV1(Event):
    """A report version (or an addendum) was signed: exactly the content whose digest is given."""

    routing_key: ClassVar[str] = "signature.report.signed.v1"
    aggregate: ClassVar[str] = "report_id"

    signature_id: UUID
    report_id: UUID
    version: int = Field(ge=1)
    addendum_id: UUID | None = None
    content_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    signer_id: UUID
    signer_name: str = Field(max_length=200)
    meaning: SignatureMeaningValues
    signed_at: AwareDatetime
    key_id: str = Field(max_length=64)
