"""Start the whole platform in the test's process, embedded or over real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from dicom_ingest.config import DicomIngestSettings
from gateway.config import GatewaySettings
from radcommon.config import CommonSettings
from radcommon.messaging import Bus
from telerad.platform import Platform, local_bus
from worklist.config import WorklistSettings


def platform_settings(data_dir: Path, *, database_urls: dict[str, str] | None = None,
                  settle_seconds: float = 0.5) -> tuple[CommonSettings, dict[str, Any]]:
    urls = database_urls or {}
    common = CommonSettings(data_dir=data_dir, retry_base_delay_seconds=0.1, retry_attempts=3)
    settings = {
        "worklist": WorklistSettings(http_port=0, database_url=urls.get("worklist")),
        "dicom-ingest": DicomIngestSettings(http_port=0, dicom_port=0, settle_seconds=settle_seconds,
                                            settle_poll_seconds=0.1, fsync=False,
                                            database_url=urls.get("dicom-ingest")),
        "gateway": GatewaySettings(http_port=0),
    }
    return common, settings


@asynccontextmanager
async def running_platform(data_dir: Path, *, bus: Bus | None = None, embedded: bool = True,
                           database_urls: dict[str, str] | None = None,
                           settle_seconds: float = 0.5) -> AsyncIterator[Platform]:
    common, settings = platform_settings(data_dir, database_urls=database_urls, settle_seconds=settle_seconds)
    platform = Platform(common, bus or local_bus(common), embedded=embedded, settings=settings)
    await platform.start()
    try:
        yield platform
    finally:
        await platform.stop()


async def wait_for_worklist(gateway_url: str, predicate: Any, timeout: float = 15.0) -> dict[str, Any]:
    """Poll GET /api/worklist until ``predicate(page)`` holds; returns that page."""
    deadline = time.monotonic() + timeout
    page: dict[str, Any] = {}
    async with aiohttp.ClientSession() as client:
        while time.monotonic() < deadline:
            async with client.get(f"{gateway_url}/api/worklist") as response:
                assert response.status == 200, await response.text()
                page = await response.json()
            if predicate(page):
                return page
            await asyncio.sleep(0.1)
    raise AssertionError(f"worklist never matched; last page: {page}")
