"""The pieces of the multi-process SCP that need no worker process: the port reservation, the registry
lookups of a worker, and the choice between workers and the in-process SCP."""

import asyncio
import socket
from pathlib import Path
from uuid import UUID

import pytest

from dicom_ingest.adapters.modalities import FreshModalities, SqlModalityRegistry
from dicom_ingest.bootstrap import build
from dicom_ingest.config import DicomIngestSettings
from dicom_ingest.entrypoints.scp import StorageSCP
from dicom_ingest.entrypoints.scp_workers import ScpWorkerPool, reserve_port
from radcommon.config import CommonSettings
from radcommon.db import Database
from radcommon.messaging.local import LocalBus

ORG = UUID(int=0xA)


def test_the_reserved_port_is_held_but_takes_no_connection() -> None:
    reservation = reserve_port("127.0.0.1", 0)
    try:
        port = reservation.getsockname()[1]
        with pytest.raises(OSError):  # bound, never listening: a connection is refused, not queued
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        with socket.socket() as worker:  # a worker binds the same port beside it
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", port))
            worker.listen()
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        with socket.socket() as stranger, pytest.raises(OSError):  # without SO_REUSEPORT: the port is taken
            stranger.bind(("127.0.0.1", port))
    finally:
        reservation.close()


async def test_a_worker_reloads_before_calling_a_modality_unknown_at_most_once_a_second(database: Database) -> None:
    service_side, worker_side = SqlModalityRegistry(database), SqlModalityRegistry(database)
    fresh = FreshModalities(worker_side, asyncio.get_running_loop(), min_interval=0.5)

    ct = await service_side.register(ORG, "CT1")
    assert worker_side.match("CT1", "192.0.2.1") is None  # its snapshot is older than the registration
    assert await asyncio.to_thread(fresh.match, "CT1", "192.0.2.1") == ct

    mr = await service_side.register(ORG, "MR1")
    assert await asyncio.to_thread(fresh.match, "MR1", "192.0.2.1") is None  # reloaded less than 0.5 s ago
    await asyncio.sleep(0.6)
    assert await asyncio.to_thread(fresh.match, "MR1", "192.0.2.1") == mr

    destination = await service_side.register(ORG, "VIEWER", "192.0.2.7", port=11112)
    await asyncio.sleep(0.6)
    assert await asyncio.to_thread(fresh.destination, ORG, "VIEWER") == destination


@pytest.mark.parametrize(("processes", "database_url", "expected"), [
    (1, "postgresql+asyncpg://postgres@127.0.0.1:5432/unused", StorageSCP),
    (2, "postgresql+asyncpg://postgres@127.0.0.1:5432/unused", ScpWorkerPool),
    (2, None, StorageSCP),  # SQLite is written by one process: the SCP stays in the service's
])
def test_workers_only_over_postgresql(tmp_path: Path, processes: int, database_url: str | None,
                                      expected: type) -> None:
    common = CommonSettings(data_dir=tmp_path)
    settings = DicomIngestSettings(scp_processes=processes, database_url=database_url)
    service = build(common, LocalBus(tmp_path / "bus.db"), embedded=True, settings=settings)
    assert type(service.scp) is expected
    if isinstance(service.scp, ScpWorkerPool):  # the workers get what they cannot find on their own
        assert service.scp.settings.database_url == database_url
        assert service.scp.settings.storage_dir == tmp_path / "dicom"
