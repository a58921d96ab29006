"""Start the whole platform in the test's process, embedded or over real RabbitMQ and PostgreSQL.

``platform_of(kind, ...)`` is the one way tests start either kind: ``@pytest.fixture(params=KINDS)``
and ``async with platform_of(request.param, tmp_path) as platform``.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import make_url

from dicom_ingest.config import DicomIngestSettings
from gateway.config import GatewaySettings
from identity.config import IdentitySettings
from identity.domain.passwords import PasswordHasher
from identity.service_layer.unit_of_work import IdentityUnitOfWork
from radcommon.config import CommonSettings
from radcommon.messaging import Bus
from reporting.config import ReportingSettings
from signature.config import SignatureSettings
from support.servers import PLATFORM_DATABASES, postgres_databases, rabbitmq_vhost
from support.sqlite import copy_migrated
from telerad.platform import Platform, local_bus, rabbitmq_bus
from worklist.config import WorklistSettings

DEMO_PASSWORD = "a demo password for tests"
#: argon2id as cheap as it gets, as identity's unit tests use it: a sign-in costs a millisecond, not the 50-150 ms of
#: the production parameters (which identity's unit tests check, and test_api_fuzz's `telerad up` runs with).
QUICK_HASHER = PasswordHasher(time_cost=1, memory_cost_kib=1024, parallelism=1)
#: embedded: SQLite and the in-process bus; distributed: PostgreSQL and RabbitMQ.
KINDS = ("embedded", "distributed")


def platform_settings(data_dir: Path, *, database_urls: dict[str, str] | None = None,
                  settle_seconds: float = 0.5) -> tuple[CommonSettings, dict[str, Any]]:
    urls = database_urls or {}
    common = CommonSettings(data_dir=data_dir, retry_base_delay_seconds=0.1, retry_attempts=3)
    settings = {
        "identity": IdentitySettings(http_port=0, database_url=urls.get("identity"),
                                     secret_key=base64.b64encode(b"k" * 32).decode()),
        "worklist": WorklistSettings(http_port=0, database_url=urls.get("worklist")),
        "reporting": ReportingSettings(http_port=0, database_url=urls.get("reporting")),
        "signature": SignatureSettings(http_port=0, database_url=urls.get("signature"),
                                       secret_key=base64.b64encode(b"s" * 32).decode()),
        "dicom-ingest": DicomIngestSettings(http_port=0, dicom_port=0, settle_seconds=settle_seconds,
                                            settle_poll_seconds=0.1, fsync=False,
                                            database_url=urls.get("dicom-ingest")),
        "gateway": GatewaySettings(http_port=0),
    }
    return common, settings


@asynccontextmanager
async def running_platform(data_dir: Path, *, bus: Bus | None = None, embedded: bool = True,
                           database_urls: dict[str, str] | None = None, settle_seconds: float = 0.5,
                           gateway: dict[str, Any] | None = None, identity: dict[str, Any] | None = None,
                           worklist: dict[str, Any] | None = None) -> AsyncIterator[Platform]:
    """``gateway`` overrides GatewaySettings fields (e.g. ``{"login_burst": 1000}``), ``identity`` IdentitySettings
    fields (e.g. ``{"smtp_host": "127.0.0.1"}``), ``worklist`` WorklistSettings fields. Embedded, each service
    finds its SQLite database migrated already (a copy: see support.sqlite), as after a restart. Identity hashes
    passwords with QUICK_HASHER."""
    common, settings = platform_settings(data_dir, database_urls=database_urls, settle_seconds=settle_seconds)
    if identity:
        settings["identity"] = IdentitySettings(**{**settings["identity"].model_dump(), **identity})
    if worklist:
        settings["worklist"] = WorklistSettings(**{**settings["worklist"].model_dump(), **worklist})
    if gateway:
        settings["gateway"] = GatewaySettings(**{"http_port": 0, **gateway})
    if embedded:
        for service in PLATFORM_DATABASES:
            url = make_url(settings[service].resolved_database_url(service, common, embedded))
            if url.get_backend_name() == "sqlite" and url.database:
                await copy_migrated(service, Path(url.database))
    platform = Platform(common, bus or local_bus(common), embedded=embedded, settings=settings)
    await platform.start()
    platform.services["identity"].deps.hasher = QUICK_HASHER  # type: ignore[attr-defined]
    await platform.seed_demo(DEMO_PASSWORD)
    try:
        yield platform
    finally:
        await platform.stop()


def rabbitmq_test_bus(amqp_url: str) -> Bus:
    """A bus on RabbitMQ with the quick retries of the tests' platforms, that reconnects half a second after losing
    the broker (aio-pika's default is 5 s)."""
    url = f"{amqp_url}{'&' if '?' in amqp_url else '?'}reconnect_interval=0.5"
    return rabbitmq_bus(CommonSettings(amqp_url=url, retry_base_delay_seconds=0.1, retry_attempts=3))


@asynccontextmanager
async def distributed_servers() -> AsyncIterator[tuple[str, dict[str, str]]]:
    """A RabbitMQ virtual host and a migrated PostgreSQL database per service, all of their own:
    ``(amqp_url, database_urls)``."""
    async with rabbitmq_vhost() as amqp_url, postgres_databases() as urls:
        yield amqp_url, urls


@asynccontextmanager
async def platform_of(kind: str, data_dir: Path, **options: Any) -> AsyncIterator[Platform]:
    """:func:`running_platform` of a kind of :data:`KINDS`, with ``options`` (``gateway=...`` ...)."""
    if kind == "embedded":
        async with running_platform(data_dir, **options) as platform:
            yield platform
    elif kind == "distributed":
        async with distributed_servers() as (amqp_url, urls), running_platform(
                data_dir, bus=rabbitmq_test_bus(amqp_url), embedded=False, database_urls=urls, **options) as platform:
            yield platform
    else:
        raise ValueError(f"no such kind of platform: {kind!r} (one of {', '.join(KINDS)})")


async def sign_in(gateway_url: str, email: str = "radiologist@demo.telerad", password: str = DEMO_PASSWORD,
                  **extra: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as client, client.post(
            f"{gateway_url}/api/auth/login", json={"email": email, "password": password, **extra}) as response:
        assert response.status == 200, await response.text()
        return await response.json()  # type: ignore[no-any-return]


async def wait_for_worklist(gateway_url: str, predicate: Any, timeout: float = 15.0) -> dict[str, Any]:
    """Sign in as the demo radiologist, then poll GET /api/worklist until ``predicate(page)`` holds."""
    deadline = time.monotonic() + timeout
    page: dict[str, Any] = {}
    headers = {"Authorization": f"Bearer {(await sign_in(gateway_url))['access_token']}"}
    async with aiohttp.ClientSession(headers=headers) as client:
        while time.monotonic() < deadline:
            async with client.get(f"{gateway_url}/api/worklist") as response:
                assert response.status == 200, await response.text()
                page = await response.json()
            if predicate(page):
                return page
            await asyncio.sleep(0.1)
    raise AssertionError(f"worklist never matched; last page: {page}")


async def identity_signing_key(platform: Platform) -> tuple[str, Ed25519PrivateKey]:
    """identity's active signing key, to make tokens that are validly signed but wrong in another way."""
    identity = platform.services["identity"]
    async with IdentityUnitOfWork(identity.db) as uow:  # type: ignore[arg-type]
        row = await identity.deps.keyring.active_key(uow, datetime.now(UTC))  # type: ignore[attr-defined]
        kid, sealed = row.kid, row.private_key_sealed
    key = serialization.load_pem_private_key(identity.deps.box.open(sealed).encode(),  # type: ignore[attr-defined]
                                             password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return kid, key
