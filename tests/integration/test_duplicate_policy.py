"""A modality sends an instance again, changed (dcmtk storescu): DICOM_INGEST_DUPLICATE_POLICY decides which copy
WADO-RS and the disk show, and an overwrite announces the study once more (study.updated).

Distributed (PostgreSQL, RabbitMQ) under both policies; embedded (SQLite, local bus) under overwrite.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import numpy as np
import pydicom
import pytest
from pydicom.filebase import DicomBytesIO

from dicom_ingest.adapters.storage import FileStorage
from radcommon.config import CommonSettings
from radcommon.messaging import Message
from support.platform import running_platform, sign_in
from support.servers import postgres_databases, rabbitmq_vhost
from support.studies import storescu, write_ct_study
from telerad.platform import Platform, rabbitmq_bus

pytestmark = pytest.mark.integration

RECEIVED, UPDATED = "dicom-ingest.study.received.v1", "dicom-ingest.study.updated.v1"


@pytest.fixture(params=[("distributed", "keep_first"), ("distributed", "overwrite"), ("embedded", "overwrite")],
                ids="-".join)
async def platform_and_policy(request: pytest.FixtureRequest, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Platform, str]]:
    mode, policy = request.param
    monkeypatch.setenv("DICOM_INGEST_DUPLICATE_POLICY", policy)  # read when the platform's settings are made
    async with AsyncExitStack() as stack:
        if mode == "embedded":
            yield await stack.enter_async_context(running_platform(tmp_path / "platform")), policy
            return
        amqp_url = await stack.enter_async_context(rabbitmq_vhost())
        databases = await stack.enter_async_context(postgres_databases())
        bus = rabbitmq_bus(CommonSettings(amqp_url=amqp_url, retry_base_delay_seconds=0.1, retry_attempts=3))
        yield await stack.enter_async_context(
            running_platform(tmp_path / "platform", bus=bus, embedded=False, database_urls=databases)), policy


async def announcements(platform: Platform) -> list[tuple[str, int]]:
    """(routing key, number of instances) of every study announcement from now on."""
    seen: list[tuple[str, int]] = []

    async def keep(message: Message) -> None:
        seen.append((message.routing_key, json.loads(message.body)["number_of_instances"]))
    await platform.bus.subscribe(["dicom-ingest.study.*.v1"], keep)
    return seen


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def wado(platform: Platform, study: str, series: str, instance: str) -> pydicom.Dataset:
    token = (await sign_in(platform.gateway_url))["access_token"]
    url = f"{platform.gateway_url}/dicomweb/studies/{study}/series/{series}/instances/{instance}"
    async with aiohttp.ClientSession() as client, client.get(url, headers={
            "Authorization": f"Bearer {token}", "Accept": "application/dicom; transfer-syntax=*"}) as response:
        assert response.status == 200, await response.text()
        return pydicom.dcmread(DicomBytesIO(await response.read()))


async def test_an_instance_sent_again_changed_is_kept_or_overwritten_by_policy(
        platform_and_policy: tuple[Platform, str], tmp_path: Path) -> None:
    platform, policy = platform_and_policy
    overwrite = policy == "overwrite"
    storage: FileStorage = platform.services["dicom-ingest"].storage  # type: ignore[attr-defined]
    seen = await announcements(platform)
    study = write_ct_study(tmp_path / "study", series=1, instances_per_series=2, size=16)
    await storescu(platform.dicom_port, *study.files)
    await until(lambda: seen == [(RECEIVED, 2)])

    first = pydicom.dcmread(study.files[0])
    changed = pydicom.dcmread(study.files[0])
    pixels = changed.pixel_array
    changed.PixelData = (4095 - pixels).astype(np.uint16).tobytes()
    changed.SeriesDescription = "corrected"
    changed.save_as(tmp_path / "changed.dcm")
    await storescu(platform.dicom_port, tmp_path / "changed.dcm")

    if overwrite:
        await until(lambda: seen == [(RECEIVED, 2), (UPDATED, 2)])
    kept = changed if overwrite else first
    served = await wado(platform, study.study_instance_uid, study.series_instance_uids[0], first.SOPInstanceUID)
    assert (served.PixelData, served.SeriesDescription) == (kept.PixelData, kept.SeriesDescription)
    on_disk = [pydicom.dcmread(f) for f in storage.files()]
    assert sorted(ds.SOPInstanceUID for ds in on_disk) == sorted(  # one file per instance: the other copy is gone
        pydicom.dcmread(f).SOPInstanceUID for f in study.files)
    [held] = [ds for ds in on_disk if ds.SOPInstanceUID == first.SOPInstanceUID]
    assert (held.PixelData, held.SeriesDescription) == (kept.PixelData, kept.SeriesDescription)
    await asyncio.sleep(2)  # settled (0.5 s) a few times over: nothing more is announced
    assert seen == ([(RECEIVED, 2), (UPDATED, 2)] if overwrite else [(RECEIVED, 2)])
