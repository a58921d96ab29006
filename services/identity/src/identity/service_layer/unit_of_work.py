from __future__ import annotations

from radcommon.uow import SqlUnitOfWork


class IdentityUnitOfWork(SqlUnitOfWork):
    async def __aenter__(self) -> IdentityUnitOfWork:
        await super().__aenter__()
        return self
