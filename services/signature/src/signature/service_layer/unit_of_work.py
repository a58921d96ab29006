from __future__ import annotations

import asyncio
from types import TracebackType
from weakref import WeakKeyDictionary

import sqlalchemy as sa

from radcommon.db import Database
from radcommon.uow import SqlUnitOfWork
from signature.adapters.audit import SqlAuditTrail
from signature.adapters.keys import SqlKeyRepository
from signature.adapters.repository import (
    SqlSignatureRepository,
    SqlSignerRepository,
    SqlStepUpLedger,
    SqlVersionRepository,
)

#: SQLite (embedded mode, one process) has no row locks: its writers take turns here instead.
_sqlite_writers: WeakKeyDictionary[Database, asyncio.Lock] = WeakKeyDictionary()
#: PostgreSQL advisory lock of the key ring: signings share it, rotation and revocation take it alone.
_KEY_RING_LOCK = 7286540


class SignatureUnitOfWork(SqlUnitOfWork):
    versions: SqlVersionRepository
    signatures: SqlSignatureRepository
    signers: SqlSignerRepository
    step_ups: SqlStepUpLedger
    audit: SqlAuditTrail
    keys: SqlKeyRepository

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._writer: asyncio.Lock | None = None

    async def __aenter__(self) -> SignatureUnitOfWork:
        if not self.db.is_postgres:
            self._writer = _sqlite_writers.setdefault(self.db, asyncio.Lock())
            await self._writer.acquire()
        try:
            await super().__aenter__()
        except BaseException:
            self._release()
            raise
        self.versions = SqlVersionRepository(self.session)
        self.signatures = SqlSignatureRepository(self.session)
        self.signers = SqlSignerRepository(self.session)
        self.step_ups = SqlStepUpLedger(self.session)
        self.audit = SqlAuditTrail(self.session)
        self.keys = SqlKeyRepository(self.session)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            await super().__aexit__(exc_type, exc, tb)
        finally:
            self._release()

    def _release(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    async def lock_key_ring(self, *, exclusive: bool) -> None:
        """Until the transaction ends: a signing sees no rotation or revocation half done, and none starts
        while it signs. (SQLite: the writer turn already excludes everyone.)"""
        if self.db.is_postgres:
            function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
            await self.session.execute(sa.text(f"SELECT {function}({_KEY_RING_LOCK})"))
