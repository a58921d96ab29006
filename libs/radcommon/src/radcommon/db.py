"""Database access: one database per service, PostgreSQL (asyncpg) or SQLite (aiosqlite).

A service owns its database: it creates it when missing and runs its own migrations before it
starts. Nothing here knows any service's tables.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url: URL = make_url(url)
        kwargs: dict[str, Any] = {}
        if self.is_postgres:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if not self.is_postgres:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.session = async_sessionmaker(self.engine, expire_on_commit=False)
        #: Set whenever a transaction wrote to the outbox, so the relay need not wait for its poll.
        self.outbox_written = asyncio.Event()

    @property
    def is_postgres(self) -> bool:
        return self.url.get_backend_name() == "postgresql"

    @property
    def libpq_dsn(self) -> str:
        """The PostgreSQL URL as drivers outside SQLAlchemy take it (asyncpg, psycopg): no driver name."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    async def ensure_created(self) -> None:
        """Create the database (PostgreSQL) or its directory (SQLite) when missing."""
        if not self.is_postgres:
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            return
        name = self.url.database
        admin = create_async_engine(self.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as conn:
                exists = await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
                if not exists:
                    try:
                        await conn.execute(text(f'CREATE DATABASE "{name}"'))
                    except Exception as error:  # another replica created it first
                        if "already exists" not in str(error):
                            raise
        finally:
            await admin.dispose()

    async def migrate(self, versions: Path) -> None:
        """Bring the schema to the newest revision in ``versions`` (Alembic)."""
        from radcommon.migrations import upgrade

        async with self.engine.begin() as conn:
            if self.is_postgres:  # replicas starting together migrate one at a time
                await conn.execute(text("SELECT pg_advisory_xact_lock(7286532)"))
            await conn.run_sync(upgrade, versions)

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()

