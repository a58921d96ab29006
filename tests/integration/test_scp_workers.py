"""The DIMSE SCP in several worker processes on one port (DICOM_INGEST_SCP_PROCESSES), distributed mode.

Real PostgreSQL, RabbitMQ, dcmtk's storescu and pynetdicom peers: associations are spread over the
workers (the service's own process holds the port without listening), what they store reaches the
worklist, a modality registered through the API is let in at once, a killed worker is replaced while
the other keeps answering, and no worker outlives the service, even one killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import (
    CTImageStorage,  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,  # type: ignore[attr-defined]
    Verification,  # type: ignore[attr-defined]
)

from dicom_ingest.entrypoints.scp_workers import ScpWorkerPool
from radcommon.config import CommonSettings
from support.dimse import associate
from support.platform import DEMO_PASSWORD, platform_settings, sign_in, wait_for_worklist
from support.servers import postgres_databases, rabbitmq_vhost
from support.studies import storescu, write_ct_study
from telerad.platform import Platform, rabbitmq_bus

pytestmark = [pytest.mark.integration, pytest.mark.dcmtk]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    if shutil.which("storescu") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true needs dcmtk's storescu (make tools)")
        pytest.skip("dcmtk's storescu is not installed")
    async with AsyncExitStack() as stack:
        amqp_url = await stack.enter_async_context(rabbitmq_vhost())
        databases = await stack.enter_async_context(postgres_databases())
        common, settings = platform_settings(tmp_path / "platform", database_urls=databases)
        settings["dicom-ingest"] = settings["dicom-ingest"].model_copy(
            update={"scp_processes": 2, "maximum_connections_per_address": 32})  # caps are per process
        bus = rabbitmq_bus(CommonSettings(amqp_url=amqp_url, retry_base_delay_seconds=0.1, retry_attempts=3))
        running = Platform(common, bus, embedded=False, settings=settings)
        await running.start()
        stack.push_async_callback(running.stop)
        await running.seed_demo(DEMO_PASSWORD)
        yield running


def established(pid: int, port: int) -> int:
    """TCP connections of process ``pid`` established on local port ``port`` (/proc: its fds, the socket table)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def open_associations(port: int, count: int) -> list[object]:
    ae = AE(ae_title="ECHOSCU")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 10
    opened = [ae.associate("127.0.0.1", port, ae_title="TELERAD") for _ in range(count)]
    if not all(assoc.is_established for assoc in opened):
        for assoc in opened:
            assoc.release()
        raise AssertionError("not every association was accepted")
    return opened


def study_root_find(port: int, study_instance_uid: str) -> list[int]:
    """NumberOfStudyRelatedInstances of each C-FIND match, asked as ANY-SCU."""
    ae = AE(ae_title="ANY-SCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="TELERAD")
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel, query.StudyInstanceUID = "STUDY", study_instance_uid
    query.NumberOfStudyRelatedInstances = ""
    try:
        return [int(identifier.NumberOfStudyRelatedInstances)
                for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
                if status and status.Status in (0xFF00, 0xFF01)]
    finally:
        assoc.release()


async def test_workers_share_the_port_store_find_and_replace_a_killed_one(platform: Platform, tmp_path: Path) -> None:
    pool = platform.services["dicom-ingest"].scp  # type: ignore[attr-defined]
    assert isinstance(pool, ScpWorkerPool)
    port = platform.dicom_port
    workers = pool.pids()
    assert len(set(workers)) == 2 and os.getpid() not in workers

    # sixteen associations at once: every one lands in a worker, and both workers get some
    opened = await asyncio.to_thread(open_associations, port, 16)
    try:
        per_worker = [established(pid, port) for pid in workers]
        assert established(os.getpid(), port) == 0  # the service's own socket holds the port but never listens
        assert sum(per_worker) == 16 and min(per_worker) > 0, per_worker
    finally:
        for assoc in opened:
            assoc.release()  # type: ignore[attr-defined]

    # a study sent over four associations at once: indexed by both workers, announced, on the worklist
    study = write_ct_study(tmp_path / "study", series=2, instances_per_series=6, size=16)
    quarters = [study.files[i::4] for i in range(4)]
    await asyncio.gather(*(storescu(port, *files) for files in quarters))
    await wait_for_worklist(platform.gateway_url, lambda page: any(
        item["study_instance_uid"] == study.study_instance_uid for item in page["items"]))
    assert await asyncio.to_thread(study_root_find, port, study.study_instance_uid) == [12]

    # a modality registered through the API is let in by the workers at once, not at their next reload
    token = (await sign_in(platform.gateway_url, "admin@demo.telerad"))["access_token"]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as client, client.post(
            f"{platform.gateway_url}/api/modalities", json={"ae_title": "NEW-CT", "host": "127.0.0.1"}) as response:
        assert response.status == 201, await response.text()
    assert await asyncio.to_thread(associate, port, "NEW-CT") == (True, None, 0x0000)
    assert (await asyncio.to_thread(associate, port, "NOT-KNOWN"))[0] is False

    # a worker killed: the other answers every association meanwhile, and a new worker takes its place
    victim, survivor = workers
    os.kill(victim, signal.SIGKILL)
    # connections queued at the dying worker are reset with it (as they would be with one process); once the
    # pool has reaped it (every thread gone, its socket closed), new ones all go to the survivor
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and victim in pool.pids():
        await asyncio.sleep(0.01)
    for _ in range(6):
        assert await asyncio.to_thread(associate, port, "ECHOSCU", 3) == (True, None, 0x0000)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (len(pool.pids()) == 2 and pool.listening and victim not in pool.pids()):
        await asyncio.sleep(0.1)
    replaced = pool.pids()
    assert survivor in replaced and victim not in replaced and len(replaced) == 2
    assert await asyncio.to_thread(study_root_find, port, study.study_instance_uid) == [12]

    await pool.stop()  # as the service stopping does
    assert not any(alive(pid) for pid in replaced)


async def test_no_worker_outlives_a_killed_service(tmp_path: Path) -> None:
    """``telerad serve dicom-ingest`` SIGKILLed: its workers see their standard input close and exit."""
    async with AsyncExitStack() as stack:
        amqp_url = await stack.enter_async_context(rabbitmq_vhost())
        databases = await stack.enter_async_context(postgres_databases("dicom-ingest"))
        env = {**os.environ, "TELERAD_AMQP_URL": amqp_url, "TELERAD_DATA_DIR": str(tmp_path),
               "DICOM_INGEST_DATABASE_URL": databases["dicom-ingest"], "DICOM_INGEST_DICOM_PORT": "0",
               "DICOM_INGEST_HTTP_PORT": "0", "DICOM_INGEST_SCP_PROCESSES": "2", "DICOM_INGEST_FSYNC": "false"}
        service = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "telerad"), "serve", "dicom-ingest", env=env, cwd=REPO,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            deadline, workers = time.monotonic() + 60, []
            while time.monotonic() < deadline and len(workers) < 2:
                await asyncio.sleep(0.2)
                workers = [pid for pid in children(service.pid) if "scp_worker" in cmdline(pid)]
            assert len(workers) == 2, "the service did not start two SCP workers"
        finally:
            service.kill()
            await service.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(alive(pid) for pid in workers):
            await asyncio.sleep(0.1)
        assert not any(alive(pid) for pid in workers)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in path.read_text().split()]
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def store_and_die(port: int, files: list[Path], workers: list[int]) -> list[int]:
    """C-STORE ``files`` on one association as STORESCU, then SIGKILL every worker before releasing."""
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title="TELERAD")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(dcmread(path)).Status) for path in files]
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        assoc.abort()


async def test_instances_acknowledged_then_lost_with_their_worker_are_indexed_by_the_next(
        platform: Platform, tmp_path: Path) -> None:
    """DICOM_INGEST_ACKNOWLEDGE_WHEN=written (the default): a C-STORE answered Success is in the spool before it
    is indexed. With the index locked, instances are acknowledged; every worker is then killed, the lock freed,
    and the workers that replace them index what the dead ones left: the study reaches C-FIND and the worklist."""
    service = platform.services["dicom-ingest"]
    pool = service.scp  # type: ignore[attr-defined]
    assert isinstance(pool, ScpWorkerPool)
    port, workers = platform.dicom_port, pool.pids()
    study = write_ct_study(tmp_path / "study", series=1, instances_per_series=5, size=16)
    blocker = await asyncpg.connect(service.db.libpq_dsn)  # type: ignore[attr-defined]
    try:
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE studies IN ACCESS EXCLUSIVE MODE")
            statuses = await asyncio.to_thread(store_and_die, port, study.files, workers)
            assert statuses == [0x0000] * 5
            assert await blocker.fetchval("SELECT count(*) FROM instances") == 0
    finally:
        await blocker.close()
    await wait_for_worklist(platform.gateway_url, lambda page: any(
        item["study_instance_uid"] == study.study_instance_uid for item in page["items"]), timeout=30)
    deadline = time.monotonic() + 30
    while not (len(pool.pids()) == 2 and pool.listening and not set(pool.pids()) & set(workers)):
        assert time.monotonic() < deadline, "the killed workers were not replaced"
        await asyncio.sleep(0.1)
    found: list[int] = []
    while time.monotonic() < deadline and found != [5]:  # a worker still starting refuses the connection
        with contextlib.suppress(AssertionError):
            found = await asyncio.to_thread(study_root_find, port, study.study_instance_uid)
        await asyncio.sleep(0.2)
    assert found == [5]
    storage_root = service.storage.root  # type: ignore[attr-defined]
    assert not [p for p in (storage_root / "spool").iterdir() if p.is_file()], "left in the spool"
