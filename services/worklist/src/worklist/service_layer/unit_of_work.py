from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import TracebackType
from weakref import WeakKeyDictionary

from radcommon.contracts import WorklistItemChangedV1
from radcommon.db import Database
from radcommon.uow import SqlUnitOfWork
from worklist.adapters.repository import (
    SqlPolicyRepository,
    SqlReaderRepository,
    SqlWorklistRepository,
    next_sequences,
)
from worklist.adapters.tables import WorklistChangeRow
from worklist.config import WorklistSettings
from worklist.domain.model import WorklistItem
from worklist.representation import item_document

#: SQLite (embedded mode, one process) has no row locks: its writers take turns here instead.
_sqlite_writers: WeakKeyDictionary[Database, asyncio.Lock] = WeakKeyDictionary()


class WorklistUnitOfWork(SqlUnitOfWork):
    """One transaction; every item changed in it becomes an entry of the organisation's change feed."""

    items: SqlWorklistRepository
    readers: SqlReaderRepository
    policies: SqlPolicyRepository

    def __init__(self, db: Database, settings: WorklistSettings) -> None:
        super().__init__(db)
        self.settings = settings
        self.changed: dict[object, tuple[WorklistItem, str]] = {}
        self._writer: asyncio.Lock | None = None

    async def __aenter__(self) -> WorklistUnitOfWork:
        if not self.db.is_postgres:
            self._writer = _sqlite_writers.setdefault(self.db, asyncio.Lock())
            await self._writer.acquire()
        await super().__aenter__()
        self.items = SqlWorklistRepository(self.session)
        self.readers = SqlReaderRepository(self.session)
        self.policies = SqlPolicyRepository(self.session)
        self.changed = {}
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            await super().__aexit__(exc_type, exc, tb)
        finally:
            if self._writer is not None:
                self._writer.release()
                self._writer = None

    async def save(self, item: WorklistItem, change: str) -> None:
        """Save the item; its feed entry is written at commit, one per item and transaction, named after the
        first change in it (a study that arrives and is assigned at once is "created", showing its assignee)."""
        await self.items.save(item)
        first = self.changed.get(item.id, (item, change))[1]
        self.changed[item.id] = (item, first)

    async def commit(self) -> None:
        by_organization: dict[object, list[tuple[WorklistItem, str]]] = {}
        for item, change in self.changed.values():
            by_organization.setdefault(item.organization_id, []).append((item, change))
        now = datetime.now(UTC)
        for changes in by_organization.values():
            sequences = await next_sequences(self.session, changes[0][0].organization_id, len(changes))
            for sequence, (item, change) in zip(sequences, changes, strict=True):
                document = item_document(item, now)
                self.session.add(WorklistChangeRow(organization_id=item.organization_id, sequence=sequence,
                                                   item_id=item.id, change=change, item=document, occurred_at=now))
                self.publish(WorklistItemChangedV1(organization_id=item.organization_id, sequence=sequence,
                                                   item_id=item.id, change=change, item=document))
        self.changed = {}
        await super().commit()
