from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from radcommon.db import Database
from support.sqlite import copy_migrated


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{await copy_migrated('reporting', tmp_path / 'reporting.db')}")
    yield database
    await database.dispose()
