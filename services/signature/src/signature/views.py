"""The read side: signature documents, their verification, the audit trail and the public key ring.

Every query about signatures or reports is filtered on the caller's organisation; the key ring is
the same for everyone and holds no organisation's data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from signature.adapters.keys import verification_key
from signature.adapters.repository import addendum_of, as_utc, to_signature, to_version
from signature.adapters.tables import AuditRow, KeyEventRow, SignableVersionRow, SignatureRow, SigningKeyRow
from signature.domain.audit import AuditActionValues
from signature.domain.model import SignableVersion, Signature, moment_text
from signature.domain.verification import PublicKey, document_problems, stored_signature_problems
from signature.representation import key_document, signature_document, verification_document

#: How a key-ring change by someone outside the reading organisation is shown in its audit trail.
OUTSIDE_ACTOR = "key custodian outside your organisation"
KEY_ACTIONS = {"retired": AuditActionValues.KEY_RETIRED, "revoked": AuditActionValues.KEY_REVOKED}


async def _signed(session: AsyncSession, organization_id: UUID, signature_id: UUID
                  ) -> tuple[Signature, SignableVersion | None] | None:
    row = (await session.execute(select(SignatureRow).where(
        col(SignatureRow.organization_id) == organization_id, col(SignatureRow.id) == signature_id))
    ).scalar_one_or_none()
    if row is None:
        return None
    version = await session.get(SignableVersionRow, (organization_id, row.report_id, row.addendum_key, row.version))
    return to_signature(row), None if version is None else to_version(version)


async def signature(session: AsyncSession, organization_id: UUID, signature_id: UUID) -> dict[str, Any] | None:
    found = await _signed(session, organization_id, signature_id)
    return None if found is None else signature_document(*found)


async def public_key(session: AsyncSession, kid: str) -> PublicKey | None:
    row = await session.get(SigningKeyRow, kid)
    return None if row is None else verification_key(row)


async def verification(session: AsyncSession, organization_id: UUID, signature_id: UUID) -> dict[str, Any] | None:
    """Recompute everything from what is stored now; each difference from what was signed is a problem."""
    found = await _signed(session, organization_id, signature_id)
    if found is None:
        return None
    stored, version = found
    problems = stored_signature_problems(stored, None if version is None else version.content,
                                         await public_key(session, stored.key_id))
    return verification_document(problems, signature_document(stored, version))


async def validation(session: AsyncSession, manifest: Mapping[str, Any], signature_b64: str, key_id: str,
                     content: Any, content_given: bool) -> dict[str, Any]:
    """A document a client brings, checked against the key ring only: nothing stored is read or returned."""
    problems = document_problems(manifest, signature_b64, key_id, await public_key(session, key_id), content,
                                 content_given=content_given)
    return verification_document(problems, {"manifest": dict(manifest), "signature": signature_b64,
                                             "key_id": key_id})


async def signatures_of_report(session: AsyncSession, organization_id: UUID, report_id: UUID
                               ) -> list[dict[str, Any]]:
    rows = (await session.execute(select(SignatureRow).where(
        col(SignatureRow.organization_id) == organization_id, col(SignatureRow.report_id) == report_id)
        .order_by(col(SignatureRow.signed_at), col(SignatureRow.id)))).scalars().all()
    return [signature_document(to_signature(row)) for row in rows]


async def report_known(session: AsyncSession, organization_id: UUID, report_id: UUID) -> bool:
    return await session.scalar(select(SignableVersionRow.version).where(
        col(SignableVersionRow.organization_id) == organization_id,
        col(SignableVersionRow.report_id) == report_id).limit(1)) is not None


async def audit_trail(session: AsyncSession, organization_id: UUID, report_id: UUID) -> list[dict[str, Any]]:
    """Signings and refusals of the report's versions, and what later happened to the keys that signed them,
    oldest first."""
    rows = (await session.execute(select(AuditRow).where(
        col(AuditRow.organization_id) == organization_id, col(AuditRow.report_id) == report_id)
        .order_by(col(AuditRow.id)))).scalars().all()
    entries: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((as_utc(row.occurred_at), 0, row.id), _audit_entry(row)) for row in rows]
    signed_with: dict[str, list[str]] = {}
    for row in rows:
        if row.action == AuditActionValues.SIGNED and row.key_id:
            signed_with.setdefault(row.key_id, []).append(str(row.signature_id))
    if signed_with:
        events = (await session.execute(select(KeyEventRow).where(
            col(KeyEventRow.kid).in_(list(signed_with)), col(KeyEventRow.action).in_(list(KEY_ACTIONS)))
            .order_by(col(KeyEventRow.id)))).scalars().all()
        entries += [((as_utc(event.occurred_at), 1, event.id),
                     _key_entry(event, organization_id, report_id, signed_with[event.kid])) for event in events]
    return [entry for _, entry in sorted(entries, key=lambda pair: pair[0])]


def _audit_entry(row: AuditRow) -> dict[str, Any]:
    return {
        "action": row.action, "occurred_at": moment_text(as_utc(row.occurred_at)),
        "actor": {"id": str(row.actor_id), "name": row.actor_name},
        "report_id": str(row.report_id), "version": row.version,
        "addendum_id": None if addendum_of(row.addendum_key) is None else row.addendum_key,
        "content_sha256": row.content_sha256 or None, "meaning": row.meaning,
        "signature_id": None if row.signature_id is None else str(row.signature_id),
        "key_id": row.key_id or None, "reason": row.reason or None, "detail": row.detail or None,
    }


def _key_entry(event: KeyEventRow, organization_id: UUID, report_id: UUID, signature_ids: list[str]
               ) -> dict[str, Any]:
    ours = event.actor_id is not None and event.actor_organization_id == organization_id
    actor = {"id": str(event.actor_id), "name": event.actor_name} if ours else \
        {"id": None, "name": event.actor_name if event.actor_id is None else OUTSIDE_ACTOR}
    return {
        "action": KEY_ACTIONS[event.action].value, "occurred_at": moment_text(as_utc(event.occurred_at)),
        "actor": actor, "report_id": str(report_id), "key_id": event.kid, "reason": event.reason or None,
        "signature_ids": signature_ids,
    }


async def key_ring(session: AsyncSession) -> dict[str, Any]:
    rows = (await session.execute(select(SigningKeyRow).order_by(col(SigningKeyRow.created_at)))).scalars().all()
    return {"keys": [key_document(row) for row in rows]}
