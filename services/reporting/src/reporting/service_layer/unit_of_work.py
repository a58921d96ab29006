from __future__ import annotations

import asyncio
from types import TracebackType
from weakref import WeakKeyDictionary

from radcommon.db import Database
from radcommon.uow import SqlUnitOfWork
from reporting.adapters.repository import (
    SqlQualityRepository,
    SqlReportRepository,
    SqlTemplateRepository,
    SqlWorklistProjection,
)

#: SQLite (embedded mode, one process) has no row locks: its writers take turns here instead.
_sqlite_writers: WeakKeyDictionary[Database, asyncio.Lock] = WeakKeyDictionary()


class ReportingUnitOfWork(SqlUnitOfWork):
    templates: SqlTemplateRepository
    reports: SqlReportRepository
    items: SqlWorklistProjection
    quality: SqlQualityRepository

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._writer: asyncio.Lock | None = None

    async def __aenter__(self) -> ReportingUnitOfWork:
        if not self.db.is_postgres:
            self._writer = _sqlite_writers.setdefault(self.db, asyncio.Lock())
            await self._writer.acquire()
        await super().__aenter__()
        self.templates = SqlTemplateRepository(self.session)
        self.reports = SqlReportRepository(self.session)
        self.items = SqlWorklistProjection(self.session)
        self.quality = SqlQualityRepository(self.session)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            await super().__aexit__(exc_type, exc, tb)
        finally:
            if self._writer is not None:
                self._writer.release()
                self._writer = None
