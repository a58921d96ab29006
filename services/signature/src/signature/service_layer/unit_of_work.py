from __future__ import annotations

import sqlalchemy as sa

from radcommon.uow import SqlUnitOfWork
from signature.adapters.audit import SqlAuditTrail
from signature.adapters.keys import SqlKeyRepository
from signature.adapters.repository import (
    SqlSignatureRepository,
    SqlSignerRepository,
    SqlStepUpLedger,
    SqlVersionRepository,
)

#: PostgreSQL advisory lock of the key ring: signings share it, rotation and revocation take it alone.
_KEY_RING_LOCK = 7286540


class SignatureUnitOfWork(SqlUnitOfWork):
    serialize_sqlite_writers = True
    versions: SqlVersionRepository
    signatures: SqlSignatureRepository
    signers: SqlSignerRepository
    step_ups: SqlStepUpLedger
    audit: SqlAuditTrail
    keys: SqlKeyRepository

    async def __aenter__(self) -> SignatureUnitOfWork:
        await super().__aenter__()
        self.versions = SqlVersionRepository(self.session)
        self.signatures = SqlSignatureRepository(self.session)
        self.signers = SqlSignerRepository(self.session)
        self.step_ups = SqlStepUpLedger(self.session)
        self.audit = SqlAuditTrail(self.session)
        self.keys = SqlKeyRepository(self.session)
        return self

    async def lock_key_ring(self, *, exclusive: bool) -> None:
        """Until the transaction ends: a signing sees no rotation or revocation half done, and none starts
        while it signs. (SQLite: the writer turn already excludes everyone.)"""
        if self.db.is_postgres:
            function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
            await self.session.execute(sa.text(f"SELECT {function}({_KEY_RING_LOCK})"))
