"""Fixtures of the integration tests: a real RabbitMQ and a real PostgreSQL, never mocks.

Without a server a test is skipped locally and fails in CI (``CI=true``). Everything a test creates
on the broker or the database server is uniquely named and removed afterwards, so tests do not
disturb each other or a platform running against the same servers.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aio_pika
import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

from radcommon.messaging.bus import RetryPolicy, dead_letter_queue, retry_queue
from radcommon.messaging.rabbitmq import AioPikaBus

HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs real RabbitMQ and PostgreSQL (never skipped when CI=true)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


def _unavailable(what: str, error: BaseException) -> None:
    reason = f"{what} is not reachable: {type(error).__name__}: {error}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: integration tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


def _run_isolated(check: Callable[[], Awaitable[None]]) -> None:
    """Run an async check on its own loop in its own thread, whatever loop the test session has."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, asyncio.wait_for(check(), 10)).result()


@pytest.fixture(scope="session")
def amqp_url() -> str:
    url = os.environ.get("TELERAD_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

    async def check() -> None:
        connection = await aio_pika.connect(url, timeout=5)
        await connection.close()

    try:
        _run_isolated(check)
    except Exception as error:
        _unavailable(f"RabbitMQ at {url}", error)
    return url


def _asyncpg_dsn(url: str, database: str) -> str:
    return make_url(url).set(drivername="postgresql", database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("TELERAD_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432").rstrip("/")

    async def check() -> None:
        connection = await asyncpg.connect(_asyncpg_dsn(url, "postgres"), timeout=5)
        await connection.close()

    try:
        _run_isolated(check)
    except Exception as error:
        _unavailable(f"PostgreSQL at {url}", error)
    return url


@pytest_asyncio.fixture
async def fresh_database_url(postgres_url: str) -> AsyncIterator[str]:
    """The URL of a new, empty PostgreSQL database of its own, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(_asyncpg_dsn(postgres_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        admin = await asyncpg.connect(_asyncpg_dsn(postgres_url, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


class BrokerNamespace:
    """Unique names for one test on the broker, and their removal afterwards.

    ``exchange`` is ``test.<hex>``; queues made with :meth:`queue` share that prefix, as does the name of
    every connection opened through :meth:`url`, which lets a test cut exactly its own connections.
    """

    def __init__(self, amqp_url: str, retry_attempts: int = 10) -> None:
        self.amqp_url = amqp_url
        self.exchange = f"test.{uuid.uuid4().hex[:12]}"
        self.retry_attempts = retry_attempts
        self.queues: list[str] = []

    def queue(self, purpose: str) -> str:
        name = f"{self.exchange}.{purpose}"
        self.queues.append(name)
        return name

    def url(self, role: str = "bus", **options: Any) -> str:
        parts = urlsplit(self.amqp_url)
        query = urlencode({"name": f"{self.exchange}.{role}", "reconnect_interval": 0.5, **options})
        return urlunsplit(parts._replace(query=f"{parts.query}&{query}" if parts.query else query))

    def connections(self) -> list[str]:
        """Broker ids (pids) of this test's open connections."""
        command = ["rabbitmqctl", "list_connections", "-q", "--no-table-headers", "pid", "client_properties"]
        out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
        return [line.split("\t", 1)[0] for line in out.splitlines() if f'"{self.exchange}.' in line]

    async def cut_connections(self, pids: list[str] | None = None) -> int:
        """Have the broker close this test's connections (or those given), as a network failure would."""
        if pids is None:
            pids = await asyncio.to_thread(self.connections)
        closing = [await asyncio.create_subprocess_exec(
            "rabbitmqctl", "close_connection", pid, "integration test cuts the connection",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL) for pid in pids]
        codes = [await process.wait() for process in closing]
        return codes.count(0)

    async def delete_all(self) -> None:
        connection = await aio_pika.connect(self.amqp_url)
        try:
            names = [self.exchange + ".unrouted"]
            for queue in self.queues:
                names += [queue, dead_letter_queue(queue)]
                names += [retry_queue(queue, n) for n in range(1, self.retry_attempts)]
            for name in names:
                async with connection.channel() as channel:
                    await channel.queue_delete(name)
            for name in (self.exchange, self.exchange + ".unrouted"):
                async with connection.channel() as channel:
                    await channel.exchange_delete(name)
        finally:
            await connection.close()


@pytest_asyncio.fixture
async def broker_namespace(amqp_url: str) -> AsyncIterator[BrokerNamespace]:
    namespace = BrokerNamespace(amqp_url)
    try:
        yield namespace
    finally:
        await namespace.delete_all()


@pytest_asyncio.fixture
async def rabbit_bus_factory(broker_namespace: BrokerNamespace) -> AsyncIterator[Callable[..., Awaitable[AioPikaBus]]]:
    """``await make(retry=..., role=...)``: a connected :class:`AioPikaBus` on the test's own exchange."""
    buses: list[AioPikaBus] = []

    async def make(retry: RetryPolicy | None = None, role: str = "bus", **kwargs: Any) -> AioPikaBus:
        bus = AioPikaBus(broker_namespace.url(role), exchange=broker_namespace.exchange, retry=retry, **kwargs)
        await bus.connect()
        buses.append(bus)
        return bus

    try:
        yield make
    finally:
        # Every bus is closed before its queues are deleted: a live robust connection would re-create them.
        results = [await _closed(bus) for bus in buses]
        for error in results:
            if error is not None:
                raise error


async def _closed(bus: AioPikaBus) -> BaseException | None:
    try:
        await bus.close()
    except Exception as error:
        return error
    return None
