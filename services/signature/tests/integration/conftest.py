from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from radcommon.db import Database
from signature.entrypoints import http
from support.servers import postgres_databases

MIGRATIONS = Path(http.__file__).parents[1] / "migrations"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    """The service's own database on a real PostgreSQL, created and migrated as the service does it."""
    async with postgres_databases("signature", migrated=False) as urls:
        database = Database(urls["signature"])
        await database.ensure_created()
        await database.migrate(MIGRATIONS)
        yield database
        await database.dispose()
