"""What may be signed, and a signature of it (21 CFR 11.50, 11.70, 11.200).

A signature covers one submitted version of a report (or of an addendum) exactly: the digest of its
canonical content, the signer and their printed name, the meaning of the signature and the moment,
all in one manifest whose canonical bytes (RFC 8785) are what the key signs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from radcommon.contracts import SignatureMeaningValues

ALGORITHM = "Ed25519"
#: The members of every manifest, in no particular order (canonical JSON sorts them).
MANIFEST_FIELDS = frozenset({"signature_id", "organization_id", "report_id", "version", "addendum_id",
                             "content_sha256", "signer_id", "signer_name", "meaning", "signed_at", "key_id",
                             "algorithm"})


class SignatureError(Exception):
    """A request the signature rules refuse; ``code`` is one word for the audit trail and the client."""

    code = "refused"


class UnknownVersion(SignatureError):
    code = "unknown_version"


class NotNewestVersion(SignatureError):
    code = "not_newest_version"


class AlreadySigned(SignatureError):
    code = "already_signed"


class StepUpRefused(SignatureError):
    """The step-up token is missing, invalid, used, or not the signer's own (``forbidden``)."""

    def __init__(self, code: str, detail: str, *, forbidden: bool = False) -> None:
        super().__init__(detail)
        self.code = code
        self.forbidden = forbidden


class NoSigningKey(SignatureError):
    code = "no_signing_key"


class UnknownKey(SignatureError):
    code = "unknown_key"


class KeyAlreadyRevoked(SignatureError):
    code = "key_already_revoked"


def moment_text(moment: datetime) -> str:
    """ISO 8601 in UTC to the microsecond, ``Z``-suffixed: one spelling for one instant."""
    if moment.tzinfo is None:
        raise ValueError("a signature's moment must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class SignableVersion:
    """A submitted version as reporting sent it; ``content`` is its canonical JSON text."""

    organization_id: UUID
    report_id: UUID
    addendum_id: UUID | None
    version: int
    content: str
    content_sha256: str
    author_id: UUID
    accession_number: str
    study_instance_uid: str
    submitted_at: datetime

    def describe(self) -> str:
        what = f"addendum {self.addendum_id} of report {self.report_id}" if self.addendum_id else \
            f"report {self.report_id}"
        return f"version {self.version} of {what}"


@dataclass(frozen=True)
class Signature:
    id: UUID
    organization_id: UUID
    report_id: UUID
    addendum_id: UUID | None
    version: int
    content_sha256: str
    signer_id: UUID
    signer_name: str
    meaning: SignatureMeaningValues
    signed_at: datetime
    key_id: str
    algorithm: str
    #: The canonical bytes that were signed, and the signature over them.
    manifest: bytes
    signature: bytes

    def claims(self) -> dict[str, Any]:
        """The manifest as the fields say it should be (compare its canonical bytes with ``manifest``)."""
        return manifest_claims(
            signature_id=self.id, organization_id=self.organization_id, report_id=self.report_id,
            version=self.version, addendum_id=self.addendum_id, content_sha256=self.content_sha256,
            signer_id=self.signer_id, signer_name=self.signer_name, meaning=self.meaning,
            signed_at=self.signed_at, key_id=self.key_id, algorithm=self.algorithm)


def manifest_claims(*, signature_id: UUID, organization_id: UUID, report_id: UUID, version: int,
                    addendum_id: UUID | None, content_sha256: str, signer_id: UUID, signer_name: str,
                    meaning: SignatureMeaningValues, signed_at: datetime, key_id: str,
                    algorithm: str) -> dict[str, Any]:
    return {
        "signature_id": str(signature_id), "organization_id": str(organization_id), "report_id": str(report_id),
        "version": version, "addendum_id": None if addendum_id is None else str(addendum_id),
        "content_sha256": content_sha256, "signer_id": str(signer_id), "signer_name": signer_name,
        "meaning": meaning.value, "signed_at": moment_text(signed_at), "key_id": key_id, "algorithm": algorithm,
    }


def check_may_sign(subject: SignableVersion, newest: int, existing: Sequence[Signature], signer_id: UUID,
                   meaning: SignatureMeaningValues) -> None:
    """Only the newest submitted version is signed; one author signature per version, and nobody signs the
    same version twice with the same meaning (another meaning, such as a second reader's review, is fine)."""
    if subject.version != newest:
        raise NotNewestVersion(f"{subject.describe()} is not the newest submitted (version {newest} is)")
    for signature in existing:
        if signature.meaning is SignatureMeaningValues.AUTHORED and meaning is SignatureMeaningValues.AUTHORED:
            raise AlreadySigned(f"{subject.describe()} was already signed as authored by {signature.signer_name} "
                                f"at {moment_text(signature.signed_at)}")
        if signature.signer_id == signer_id and signature.meaning is meaning:
            raise AlreadySigned(f"you already signed {subject.describe()} as {meaning.value}")
