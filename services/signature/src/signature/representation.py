"""A signature and a key as the API shows them; the manifestation every rendering must carry (21 CFR 11.50)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from radcommon.contracts import SignatureMeaningValues
from signature.adapters.keys import public_jwk
from signature.adapters.tables import SigningKeyRow
from signature.domain.model import SignableVersion, Signature, moment_text
from signature.domain.verification import VerificationProblem

MEANING_WORDS = {SignatureMeaningValues.AUTHORED: "Authored", SignatureMeaningValues.REVIEWED: "Reviewed",
                 SignatureMeaningValues.APPROVED: "Approved"}


def manifestation(signer_name: str, signed_at: datetime, meaning: SignatureMeaningValues) -> dict[str, str]:
    """Printed name, date and time, and meaning: what a rendering of the signed record shows."""
    moment = signed_at.astimezone(UTC)
    text = (f"{MEANING_WORDS[meaning]} and electronically signed by {signer_name} on {moment:%Y-%m-%d} at "
            f"{moment:%H:%M:%S} UTC")
    return {"printed_name": signer_name, "signed_at": moment_text(signed_at), "meaning": meaning.value, "text": text}


def _signed_manifest(signature: Signature) -> Any:
    try:
        return json.loads(signature.manifest)
    except ValueError:
        return None


def signature_document(signature: Signature, version: SignableVersion | None = None) -> dict[str, Any]:
    """``manifest`` is the object that was signed; with ``signature`` and ``key_id`` it is what
    ``POST /signatures/validate`` (or anyone with the public key) checks."""
    return {
        "signature_id": str(signature.id), "organization_id": str(signature.organization_id),
        "report_id": str(signature.report_id), "version": signature.version,
        "addendum_id": None if signature.addendum_id is None else str(signature.addendum_id),
        "content_sha256": signature.content_sha256, "signer_id": str(signature.signer_id),
        "signer_name": signature.signer_name, "meaning": signature.meaning.value,
        "signed_at": moment_text(signature.signed_at), "key_id": signature.key_id, "algorithm": signature.algorithm,
        "accession_number": version.accession_number if version else None,
        "study_instance_uid": version.study_instance_uid if version else None,
        "manifest": _signed_manifest(signature),
        "signature": base64.b64encode(signature.signature).decode(),
        "manifestation": manifestation(signature.signer_name, signature.signed_at, signature.meaning),
    }


def verification_document(problems: list[VerificationProblem], signature: dict[str, Any]) -> dict[str, Any]:
    return {"valid": not problems, "problems": [p.document() for p in problems], "signature": signature}


def key_document(row: SigningKeyRow) -> dict[str, Any]:
    def moment(value: datetime | None) -> str | None:
        return None if value is None else moment_text(value if value.tzinfo else value.replace(tzinfo=UTC))

    status = "revoked" if row.revoked_at else "retired" if row.retired_at else "signing"
    return {"kid": row.kid, "algorithm": row.algorithm, "status": status,
            "public_key": base64.b64encode(row.public_key).decode(), "jwk": public_jwk(row.public_key),
            "created_at": moment(row.created_at), "retired_at": moment(row.retired_at),
            "revoked_at": moment(row.revoked_at), "revocation_reason": row.revocation_reason or None}
