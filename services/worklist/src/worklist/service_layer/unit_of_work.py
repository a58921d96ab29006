from __future__ import annotations

from datetime import UTC, datetime

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


class WorklistUnitOfWork(SqlUnitOfWork):
    """One transaction; every item changed in it becomes an entry of the organisation's change feed."""

    serialize_sqlite_writers = True

    items: SqlWorklistRepository
    readers: SqlReaderRepository
    policies: SqlPolicyRepository

    def __init__(self, db: Database, settings: WorklistSettings) -> None:
        super().__init__(db)
        self.settings = settings
        self.changed: dict[object, tuple[WorklistItem, str]] = {}

    async def __aenter__(self) -> WorklistUnitOfWork:
        await super().__aenter__()
        self.items = SqlWorklistRepository(self.session)
        self.readers = SqlReaderRepository(self.session)
        self.policies = SqlPolicyRepository(self.session)
        self.changed = {}
        return self

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
