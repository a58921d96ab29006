"""The unit of work every service's handlers run in: one database transaction, outbox included."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import ClassVar
from weakref import WeakKeyDictionary

from sqlalchemy.ext.asyncio import AsyncSession

from radcommon.contracts import Event
from radcommon.db import Database
from radcommon.outbox import add_to_outbox, flush_outbox

#: SQLite (embedded mode, one process) has no row locks: writers of a unit of work that asks for it take turns.
_sqlite_writers: WeakKeyDictionary[Database, asyncio.Lock] = WeakKeyDictionary()


class SqlUnitOfWork:
    """``async with uow: ...; await uow.commit()`` — leaving without commit rolls everything back.

    A subclass that reads then writes rows other transactions may change at the same time (claims,
    sequences, signatures) sets ``serialize_sqlite_writers``: on PostgreSQL its row locks do that
    work, on SQLite its units of work then run one at a time in the process.
    """

    serialize_sqlite_writers: ClassVar[bool] = False
    session: AsyncSession

    def __init__(self, db: Database) -> None:
        self.db = db
        self._writer: asyncio.Lock | None = None

    async def __aenter__(self) -> SqlUnitOfWork:
        if self.serialize_sqlite_writers and not self.db.is_postgres:
            writer = _sqlite_writers.setdefault(self.db, asyncio.Lock())
            await writer.acquire()
            self._writer = writer
        self.session = self.db.session()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            await self.session.rollback()
            await self.session.close()
        finally:
            if self._writer is not None:
                self._writer.release()
                self._writer = None

    def publish(self, event: Event) -> None:
        add_to_outbox(self.session, event)

    async def commit(self) -> None:
        written = await flush_outbox(self.session)
        await self.session.commit()
        if written:
            self.db.outbox_written.set()
