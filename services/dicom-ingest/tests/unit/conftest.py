"""The index database, for the tests that write to it: SQLite, and PostgreSQL as an integration test."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import pytest_asyncio

from radcommon.db import Database
from support.servers import postgres_databases

MIGRATIONS = Path(__file__).parents[2] / "src" / "dicom_ingest" / "migrations"


@asynccontextmanager
async def migrated_postgres() -> AsyncIterator[Database]:
    """A new dicom-ingest database on the test PostgreSQL, migrated; dropped afterwards."""
    async with postgres_databases("dicom-ingest") as urls:
        database = Database(urls["dicom-ingest"])
        try:
            await database.ensure_created()
            await database.migrate(MIGRATIONS)
            yield database
        finally:
            await database.dispose()


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'dicom_ingest.db'}")
        await database.migrate(MIGRATIONS)
        yield database
        await database.dispose()
        return
    async with migrated_postgres() as database:
        yield database


@pytest_asyncio.fixture
async def postgres() -> AsyncIterator[Database]:
    """Row locks between transactions of two processes: PostgreSQL only (SQLite has one writer)."""
    async with migrated_postgres() as database:
        yield database


@pytest_asyncio.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    """SQLite only, for what does not depend on the dialect."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'dicom_ingest.db'}")
    await db.ensure_created()
    await db.migrate(MIGRATIONS)
    yield db
    await db.dispose()
