"""The unit of work every service's handlers run in: one database transaction, outbox included."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncSession

from radcommon.contracts import Event
from radcommon.db import Database
from radcommon.outbox import add_to_outbox, flush_outbox


class SqlUnitOfWork:
    """``async with uow: ...; await uow.commit()`` — leaving without commit rolls everything back."""

    session: AsyncSession

    def __init__(self, db: Database) -> None:
        self.db = db

    async def __aenter__(self) -> SqlUnitOfWork:
        self.session = self.db.session()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.session.rollback()
        await self.session.close()

    def publish(self, event: Event) -> None:
        add_to_outbox(self.session, event)

    async def commit(self) -> None:
        written = await flush_outbox(self.session)
        await self.session.commit()
        if written:
            self.db.outbox_written.set()
