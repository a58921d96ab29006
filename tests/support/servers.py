"""Real RabbitMQ and PostgreSQL for integration tests: required when CI=true, skipped otherwise."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

import aio_pika
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

AMQP_URL = os.environ.get("TELERAD_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
POSTGRES_URL = os.environ.get("TELERAD_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432")


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true needs {reason}", pytrace=False)
    pytest.skip(reason)


async def require_rabbitmq() -> None:
    try:
        connection = await asyncio.wait_for(aio_pika.connect(AMQP_URL), 10)
        await connection.close()
    except Exception as error:
        unavailable(f"RabbitMQ at {AMQP_URL} ({error})")


async def require_postgres() -> None:
    engine = create_async_engine(f"{POSTGRES_URL}/postgres")
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as error:
        unavailable(f"PostgreSQL at {POSTGRES_URL} ({error})")
    finally:
        await engine.dispose()


@asynccontextmanager
async def rabbitmq_vhost() -> AsyncIterator[str]:
    """A virtual host of its own, so names never collide with a running platform or another test."""
    await require_rabbitmq()
    vhost = f"telerad-test-{uuid.uuid4().hex[:12]}"
    await asyncio.to_thread(subprocess.run, ["rabbitmqctl", "-q", "add_vhost", vhost], check=True)
    await asyncio.to_thread(subprocess.run, ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest",
                                             ".*", ".*", ".*"], check=True)
    try:
        yield AMQP_URL.rstrip("/") + "/" + quote(vhost, safe="")
    finally:
        await asyncio.to_thread(subprocess.run, ["rabbitmqctl", "-q", "delete_vhost", vhost], check=False)


#: The services that own a database.
PLATFORM_DATABASES = ("identity", "worklist", "reporting", "signature", "dicom-ingest")


@asynccontextmanager
async def postgres_databases(*services: str) -> AsyncIterator[dict[str, str]]:
    """A fresh database per service (created by the service itself), dropped afterwards; with no
    service named, one for every service of the platform."""
    services = services or PLATFORM_DATABASES
    await require_postgres()
    suffix = uuid.uuid4().hex[:10]
    urls = {s: f"{POSTGRES_URL}/test_{s.replace('-', '_')}_{suffix}" for s in services}
    try:
        yield urls
    finally:
        engine = create_async_engine(f"{POSTGRES_URL}/postgres", isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            for url in urls.values():
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
        await engine.dispose()
