"""Start the whole platform in the test's process, embedded or over real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from dicom_ingest.config import DicomIngestSettings
from gateway.config import GatewaySettings
from identity.config import IdentitySettings
from radcommon.config import CommonSettings
from radcommon.messaging import Bus
from reporting.config import ReportingSettings
from signature.config import SignatureSettings
from telerad.platform import Platform, local_bus
from worklist.config import WorklistSettings

DEMO_PASSWORD = "a demo password for tests"


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
    fields (e.g. ``{"smtp_host": "127.0.0.1"}``), ``worklist`` WorklistSettings fields."""
    common, settings = platform_settings(data_dir, database_urls=database_urls, settle_seconds=settle_seconds)
    if identity:
        settings["identity"] = IdentitySettings(**{**settings["identity"].model_dump(), **identity})
    if worklist:
        settings["worklist"] = WorklistSettings(**{**settings["worklist"].model_dump(), **worklist})
    if gateway:
        settings["gateway"] = GatewaySettings(**{"http_port": 0, **gateway})
    platform = Platform(common, bus or local_bus(common), embedded=embedded, settings=settings)
    await platform.start()
    await platform.seed_demo(DEMO_PASSWORD)
    try:
        yield platform
    finally:
        await platform.stop()


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
