from __future__ import annotations

from radcommon.uow import SqlUnitOfWork
from worklist.adapters.repository import SqlWorklistRepository


class WorklistUnitOfWork(SqlUnitOfWork):
    items: SqlWorklistRepository

    async def __aenter__(self) -> WorklistUnitOfWork:
        await super().__aenter__()
        self.items = SqlWorklistRepository(self.session)
        return self
