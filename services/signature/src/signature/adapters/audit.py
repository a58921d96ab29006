from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from signature.adapters.repository import addendum_key
from signature.adapters.tables import AuditRow
from signature.domain.audit import AuditEntry


class SqlAuditTrail:
    """Append only: nothing in the service updates or deletes these rows."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def append(self, entry: AuditEntry) -> None:
        self.session.add(AuditRow(
            organization_id=entry.organization_id, report_id=entry.report_id,
            addendum_key=addendum_key(entry.addendum_id), version=entry.version, action=entry.action.value,
            reason=entry.reason[:64], detail=entry.detail[:500], signature_id=entry.signature_id,
            actor_id=entry.actor_id, actor_name=entry.actor_name[:254], meaning=entry.meaning.value,
            content_sha256=entry.content_sha256, key_id=entry.key_id, occurred_at=entry.occurred_at))
