"""Distributed mode through a RabbitMQ restart: what is stored while the broker is away still arrives, once."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from support.platform import platform_of, wait_for_worklist
from support.studies import storescu, write_ct_study
from telerad.platform import Platform

pytestmark = pytest.mark.integration


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    async with platform_of("distributed", tmp_path) as running:
        yield running


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


async def ready(url: str) -> int:
    async with aiohttp.ClientSession() as client, client.get(f"{url}/readyz") as response:
        return response.status


async def test_studies_stored_while_the_broker_restarts_reach_the_worklist_once(platform: Platform,
                                                                                 tmp_path: Path) -> None:
    first = write_ct_study(tmp_path / "first", series=1, instances_per_series=2, accession_number="BEFORE")
    await storescu(platform.dicom_port, *first.files)
    await wait_for_worklist(platform.gateway_url, lambda p: p["total"] == 1)

    second = write_ct_study(tmp_path / "second", series=2, instances_per_series=2, accession_number="DURING")
    await asyncio.to_thread(rabbitmqctl, "stop_app")
    try:
        await storescu(platform.dicom_port, *second.files)  # stored and indexed; its event waits in the outbox
        assert await ready(platform.services["dicom-ingest"].http_url) == 503
        await asyncio.sleep(1.5)  # the study settles and the relay fails to publish while the broker is away
    finally:
        await asyncio.to_thread(rabbitmqctl, "start_app")
        await asyncio.to_thread(rabbitmqctl, "await_startup")

    page = await wait_for_worklist(platform.gateway_url, lambda p: p["total"] == 2, timeout=60)
    by_accession = {item["accession_number"]: item for item in page["items"]}
    assert set(by_accession) == {"BEFORE", "DURING"}
    assert by_accession["DURING"]["number_of_instances"] == 4
    assert by_accession["DURING"]["number_of_series"] == 2
    await asyncio.sleep(1)
    assert (await wait_for_worklist(platform.gateway_url, lambda p: True))["total"] == 2
