from __future__ import annotations

from radcommon.uow import SqlUnitOfWork
from reporting.adapters.repository import (
    SqlQualityRepository,
    SqlReportRepository,
    SqlTemplateRepository,
    SqlWorklistProjection,
)


class ReportingUnitOfWork(SqlUnitOfWork):
    serialize_sqlite_writers = True
    templates: SqlTemplateRepository
    reports: SqlReportRepository
    items: SqlWorklistProjection
    quality: SqlQualityRepository

    async def __aenter__(self) -> ReportingUnitOfWork:
        await super().__aenter__()
        self.templates = SqlTemplateRepository(self.session)
        self.reports = SqlReportRepository(self.session)
        self.items = SqlWorklistProjection(self.session)
        self.quality = SqlQualityRepository(self.session)
        return self

