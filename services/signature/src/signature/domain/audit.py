"""The signature audit trail (21 CFR 11.10(e)): who did what to which version, when, and what it meant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from radcommon.contracts import SignatureMeaningValues


class AuditActionValues(StrEnum):
    SIGNED = "signed"
    REFUSED = "refused"
    #: Read from the key ring's own record, for the keys that signed the report.
    KEY_RETIRED = "key_retired"
    KEY_REVOKED = "key_revoked"


@dataclass(frozen=True)
class AuditEntry:
    organization_id: UUID
    report_id: UUID
    addendum_id: UUID | None
    version: int
    action: AuditActionValues
    actor_id: UUID
    actor_name: str
    meaning: SignatureMeaningValues
    occurred_at: datetime
    content_sha256: str = ""
    signature_id: UUID | None = None
    key_id: str = ""
    reason: str = ""
    detail: str = ""
