from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from radcommon.db import Database
from reporting.entrypoints import http
from support.servers import postgres_databases

MIGRATIONS = Path(http.__file__).parents[1] / "migrations"
HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    """The service's own PostgreSQL database, created and migrated as the service does at start."""
    async with postgres_databases("reporting", migrated=False) as urls:
        database = Database(urls["reporting"])
        await database.ensure_created()
        await database.migrate(MIGRATIONS)
        yield database
        await database.dispose()
