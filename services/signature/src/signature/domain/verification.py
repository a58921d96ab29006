"""Checking a signature: each way it can fail has a code and a sentence saying why.

A stored signature is checked against the content it covers (the digest), against its own columns
(the manifest rebuilt from them must be the manifest signed), cryptographically (Ed25519, RFC 8032)
and against the key's revocation. A document a client brings is checked the same way, from what it
carries and the public key it names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from radcommon.canonical import canonical_json, content_sha256
from signature.domain.model import ALGORITHM, MANIFEST_FIELDS, Signature, moment_text

SIGNATURE_BYTES = 64  # RFC 8032 5.1.6


class ProblemCodeValues(StrEnum):
    CONTENT_CHANGED = "content_changed"
    MANIFEST_CHANGED = "manifest_changed"
    MANIFEST_MALFORMED = "manifest_malformed"
    SIGNATURE_INVALID = "signature_invalid"
    SIGNATURE_MALFORMED = "signature_malformed"
    KEY_UNKNOWN = "key_unknown"
    KEY_MISMATCH = "key_mismatch"
    KEY_REVOKED = "key_revoked"
    ALGORITHM_UNSUPPORTED = "algorithm_unsupported"


@dataclass(frozen=True)
class VerificationProblem:
    code: ProblemCodeValues
    detail: str
    extra: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        return {"code": self.code.value, "detail": self.detail, **self.extra}


@dataclass(frozen=True)
class PublicKey:
    """A key of the ring as verification needs it: its public half and whether it was revoked."""

    key_id: str
    public_key: bytes
    revoked_at: datetime | None = None
    revocation_reason: str = ""


def signature_problems(manifest: bytes, signature: bytes, key_id: str, key: PublicKey | None
                       ) -> list[VerificationProblem]:
    """Does ``signature`` over ``manifest`` verify with the key, and is the key still trusted?"""
    if key is None:
        return [VerificationProblem(ProblemCodeValues.KEY_UNKNOWN,
                                    f"No key {key_id!r} was ever in the signature service's key ring.")]
    problems = []
    if len(signature) != SIGNATURE_BYTES:
        problems.append(VerificationProblem(
            ProblemCodeValues.SIGNATURE_MALFORMED,
            f"An Ed25519 signature is {SIGNATURE_BYTES} bytes; this one is {len(signature)}."))
    else:
        try:
            Ed25519PublicKey.from_public_bytes(key.public_key).verify(signature, manifest)
        except InvalidSignature:
            problems.append(VerificationProblem(
                ProblemCodeValues.SIGNATURE_INVALID,
                f"The signature does not verify with key {key.key_id} over the manifest: the manifest or the "
                "signature was altered, or another key made it."))
        except ValueError:
            problems.append(VerificationProblem(ProblemCodeValues.KEY_UNKNOWN,
                                                f"Key {key.key_id} holds no valid Ed25519 public key."))
    if key.revoked_at is not None:
        reason = f" ({key.revocation_reason})" if key.revocation_reason else ""
        problems.append(VerificationProblem(
            ProblemCodeValues.KEY_REVOKED,
            f"Key {key.key_id} was revoked at {moment_text(key.revoked_at)}{reason}; signatures it made are no "
            "longer trusted.", {"revoked_at": moment_text(key.revoked_at)}))
    return problems


def stored_signature_problems(stored: Signature, content: str | None, key: PublicKey | None
                              ) -> list[VerificationProblem]:
    """A signature as the database holds it, with the canonical content of the version it covers."""
    problems = []
    if content is None:
        problems.append(VerificationProblem(ProblemCodeValues.CONTENT_CHANGED,
                                            "The signed version's content is no longer stored."))
    elif hashlib.sha256(content.encode()).hexdigest() != stored.content_sha256:
        problems.append(VerificationProblem(
            ProblemCodeValues.CONTENT_CHANGED,
            "The stored content's SHA-256 is not the digest that was signed: the content changed after signing."))
    if canonical_json(stored.claims()) != stored.manifest:
        problems.append(VerificationProblem(
            ProblemCodeValues.MANIFEST_CHANGED,
            f"The signature's record ({', '.join(_changed(stored))}) no longer matches the manifest that was "
            "signed."))
    return problems + signature_problems(stored.manifest, stored.signature, stored.key_id, key)


def _changed(stored: Signature) -> list[str]:
    """The members where the stored record and the signed manifest differ (all of them, if unreadable)."""
    try:
        signed = json.loads(stored.manifest)
    except ValueError:
        signed = {}
    rebuilt = stored.claims()
    changed = sorted(name for name in MANIFEST_FIELDS if not isinstance(signed, dict)
                     or signed.get(name) != rebuilt.get(name))
    return changed or ["its encoding"]


def document_problems(manifest: Mapping[str, Any], signature: str, key_id: str, key: PublicKey | None,
                      content: Any = None, *, content_given: bool = False) -> list[VerificationProblem]:
    """A signature document a client brings: the manifest object, the signature in base64, the key it names,
    and (when ``content_given``) the content it claims to cover."""
    problems: list[VerificationProblem] = []
    if set(manifest) != MANIFEST_FIELDS:
        missing, extra = sorted(MANIFEST_FIELDS - set(manifest)), sorted(set(manifest) - MANIFEST_FIELDS)
        problems.append(VerificationProblem(ProblemCodeValues.MANIFEST_MALFORMED,
                                            f"A manifest has exactly the members {sorted(MANIFEST_FIELDS)}; "
                                            f"missing {missing}, unexpected {extra}."))
    try:
        manifest_bytes = canonical_json(dict(manifest))
    except ValueError as error:
        return [*problems, VerificationProblem(ProblemCodeValues.MANIFEST_MALFORMED, str(error))]
    if manifest.get("key_id") != key_id:
        problems.append(VerificationProblem(ProblemCodeValues.KEY_MISMATCH,
                                            f"The document names key {key_id!r}; its manifest names "
                                            f"{manifest.get('key_id')!r}."))
    if manifest.get("algorithm") != ALGORITHM:
        problems.append(VerificationProblem(ProblemCodeValues.ALGORITHM_UNSUPPORTED,
                                            f"The manifest names algorithm {manifest.get('algorithm')!r}, "
                                            f"not {ALGORITHM}."))
    if content_given:
        problems += _content_problems(content, manifest.get("content_sha256"))
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return [*problems, VerificationProblem(ProblemCodeValues.SIGNATURE_MALFORMED,
                                               "The signature is not base64.")]
    return problems + signature_problems(manifest_bytes, raw, key_id, key)


def _content_problems(content: Any, signed_digest: object) -> list[VerificationProblem]:
    try:
        digest = content_sha256(content)
    except ValueError as error:
        return [VerificationProblem(ProblemCodeValues.CONTENT_CHANGED, f"The content cannot be canonicalised: "
                                                                       f"{error}.")]
    if digest != signed_digest:
        return [VerificationProblem(ProblemCodeValues.CONTENT_CHANGED,
                                    f"The content's SHA-256 ({digest}) is not the digest the manifest signs.")]
    return []
