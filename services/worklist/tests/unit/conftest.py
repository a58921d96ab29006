from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from radcommon.auth import auth_middleware
from radcommon.db import Database
from radcommon.http import create_app
from support.sqlite import copy_migrated
from support.worklist import TOKENS, Feed
from worklist.config import WorklistSettings
from worklist.entrypoints import http
from worklist.service_layer.unit_of_work import WorklistUnitOfWork


@pytest.fixture
def settings() -> WorklistSettings:
    return WorklistSettings()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{await copy_migrated('worklist', tmp_path / 'worklist.db')}")
    yield database
    await database.dispose()


@pytest.fixture
async def client(db: Database, settings: WorklistSettings) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    app = create_app("worklist")
    app.middlewares.append(auth_middleware(TOKENS.verifier()))
    http.add_routes(app, db, settings)
    test_client = TestClient(TestServer(app))
    await test_client.start_server()
    yield test_client
    await test_client.close()


@pytest.fixture
def feed(db: Database, settings: WorklistSettings) -> Feed:
    return Feed(db, settings)


@pytest.fixture
def uow(db: Database, settings: WorklistSettings) -> Any:
    return lambda: WorklistUnitOfWork(db, settings)




@pytest.fixture
def outbox(db: Database) -> Any:
    """The events the worklist has written to its outbox, as (routing key, body) in order."""
    import json

    import sqlalchemy as sa

    from radcommon.outbox import outbox_table

    async def read(prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        async with db.session() as session:
            rows = (await session.execute(sa.select(outbox_table.c.routing_key, outbox_table.c.body)
                                          .order_by(outbox_table.c.id))).all()
        return [(key, json.loads(body)) for key, body in rows if key.startswith(prefix)]
    return read
