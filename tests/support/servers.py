"""Real RabbitMQ and PostgreSQL for integration tests: required when CI=true, skipped otherwise.

The slow parts of setting these up stay off the tests' path: a virtual host is made one test ahead
(one ``rabbitmqctl`` call instead of two), databases are copies of a template migrated once per session,
and virtual hosts and databases are removed by a background thread that the interpreter waits for
before it exits.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib
import json
import os
import subprocess
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit

import aio_pika
import asyncpg
import pytest
from sqlalchemy.engine import make_url

AMQP_URL = os.environ.get("TELERAD_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
POSTGRES_URL = os.environ.get("TELERAD_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432")

#: The services that own a database.
PLATFORM_DATABASES = ("identity", "worklist", "reporting", "signature", "dicom-ingest")

_background = ThreadPoolExecutor(2, thread_name_prefix="test-servers")
_lock = threading.Lock()
_reachable: set[str] = set()
_spare_vhost: Future[str] | None = None
_templates: dict[str, str] = {}


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true needs {reason}", pytrace=False)
    pytest.skip(reason)


async def require_rabbitmq() -> None:
    if "rabbitmq" in _reachable:
        return
    try:
        connection = await asyncio.wait_for(aio_pika.connect(AMQP_URL), 10)
        await connection.close()
    except Exception as error:
        unavailable(f"RabbitMQ at {AMQP_URL} ({error})")
    _reachable.add("rabbitmq")


async def require_postgres() -> None:
    if "postgres" in _reachable:
        return
    try:
        connection = await asyncio.wait_for(asyncpg.connect(_dsn("postgres")), 10)
        await connection.close()
    except Exception as error:
        unavailable(f"PostgreSQL at {POSTGRES_URL} ({error})")
    _reachable.add("postgres")


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


def _new_vhost() -> str:
    """A virtual host that the user of AMQP_URL may use, in one ``rabbitmqctl`` call."""
    vhost = f"telerad-test-{uuid.uuid4().hex[:12]}"
    user = urlsplit(AMQP_URL).username or "guest"
    definitions = {"vhosts": [{"name": vhost}], "permissions": [
        {"user": user, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="telerad-vhost-") as file:
        json.dump(definitions, file)
        file.flush()
        os.chmod(file.name, 0o644)  # rabbitmqctl reads it as the rabbitmq user
        _rabbitmqctl("import_definitions", file.name)
    return vhost


def _delete_vhost(vhost: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False, capture_output=True, timeout=120)


@asynccontextmanager
async def rabbitmq_vhost() -> AsyncIterator[str]:
    """A virtual host of its own, so names never collide with a running platform or another test."""
    global _spare_vhost
    await require_rabbitmq()
    with _lock:
        ready, _spare_vhost = _spare_vhost or _background.submit(_new_vhost), _background.submit(_new_vhost)
    try:
        vhost = await asyncio.wrap_future(ready)
    except subprocess.CalledProcessError:  # made while the broker was away (test_broker_restart stops it): again
        vhost = await asyncio.to_thread(_new_vhost)
    try:
        yield AMQP_URL.rstrip("/") + "/" + quote(vhost, safe="")
    finally:
        _background.submit(_delete_vhost, vhost)


def _dsn(database: str) -> str:
    return make_url(POSTGRES_URL).set(drivername="postgresql", database=database).render_as_string(
        hide_password=False)


async def _migrated_template(service: str) -> str:
    """A database migrated by the service's own code (radcommon.db), to copy for each test. Built on the
    caller's loop, never in a thread: Alembic's ``op`` and ``context`` are process-wide."""
    from radcommon.db import Database

    if service not in _templates:
        name = f"test_template_{service.replace('-', '_')}_{uuid.uuid4().hex[:10]}"
        package = importlib.import_module(service.replace("-", "_"))
        db = Database(f"{POSTGRES_URL}/{name}")
        try:
            await db.ensure_created()
            await db.migrate(Path(package.__file__ or "").parent / "migrations")
        except BaseException:
            _background.submit(_drop_databases, [name])
            raise
        finally:
            await db.engine.dispose()
        _templates[service] = name
    return _templates[service]


def _drop_databases(names: list[str]) -> None:
    async def drop() -> None:
        admin = await asyncpg.connect(_dsn("postgres"))
        try:
            for name in names:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
    asyncio.run(drop())


@asynccontextmanager
async def postgres_databases(*services: str, migrated: bool = True) -> AsyncIterator[dict[str, str]]:
    """A fresh database per service, dropped afterwards; with no service named, one for every service of the
    platform. Each is a copy of a database the service's own migrations (radcommon.db) built once for the session,
    what a restarted service finds; ``migrated=False`` leaves it to the service to create and migrate."""
    services = services or PLATFORM_DATABASES
    await require_postgres()
    suffix = uuid.uuid4().hex[:10]
    urls = {s: f"{POSTGRES_URL}/test_{s.replace('-', '_')}_{suffix}" for s in services}
    try:
        if migrated:
            templates = {service: await _migrated_template(service) for service in services}
            admin = await asyncpg.connect(_dsn("postgres"))
            try:
                for service, url in urls.items():
                    await admin.execute(f'CREATE DATABASE "{url.rsplit("/", 1)[1]}" TEMPLATE "{templates[service]}"')
            finally:
                await admin.close()
        yield urls
    finally:
        _background.submit(_drop_databases, [url.rsplit("/", 1)[1] for url in urls.values()])


@atexit.register
def _remove_what_is_left() -> None:
    """After the background thread finished (the interpreter joins it first): the unused virtual host and the
    templates."""
    if _spare_vhost is not None and _spare_vhost.done() and _spare_vhost.exception() is None:
        _delete_vhost(_spare_vhost.result())
    if _templates:
        _drop_databases(list(_templates.values()))
