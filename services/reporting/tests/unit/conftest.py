from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from radcommon.db import Database
from reporting.entrypoints import http

MIGRATIONS = Path(http.__file__).parents[1] / "migrations"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'reporting.db'}")
    await database.migrate(MIGRATIONS)
    yield database
    await database.dispose()
