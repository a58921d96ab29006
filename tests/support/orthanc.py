"""Debian's Orthanc as a real remote PACS for integration tests: required when CI=true, skipped otherwise.

``Orthanc <config.json>`` runs on free ports with its storage and index in a temporary folder, knowing
the DICOM modalities it is given (AE title, host, port): the move destinations it may send to and the
peers it lets query and retrieve. Orthanc 1.10 has no bind-address option: its DICOM port listens on
every interface while the test runs; its HTTP port refuses remote clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from support.servers import unavailable

STARTUP_SECONDS = 60.0


@dataclass(frozen=True)
class Orthanc:
    ae_title: str
    dicom_port: int
    http_url: str

    async def rest(self, method: str, path: str, *, data: bytes | None = None, json_body: Any = None) -> Any:
        """A call to Orthanc's REST API; its JSON answer."""
        async with aiohttp.ClientSession() as client, client.request(
                method, f"{self.http_url}{path}", data=data, json=json_body) as response:
            text = await response.text()
            assert response.status == 200, f"Orthanc {method} {path}: {response.status} {text[:500]}"
            return json.loads(text) if text else None

    async def upload(self, *paths: Path) -> None:
        """Store PS3.10 files through the REST API (POST /instances), as an upload would."""
        for path in paths:
            answer = await self.rest("POST", "/instances", data=await asyncio.to_thread(path.read_bytes))
            assert answer["Status"] in ("Success", "AlreadyStored"), answer

    async def study_instances(self, study_instance_uid: str) -> set[str]:
        """The SOP Instance UIDs Orthanc holds of a study (empty when it holds none)."""
        found = await self.rest("POST", "/tools/find", json_body={
            "Level": "Instance", "Query": {"StudyInstanceUID": study_instance_uid}, "Expand": True})
        return {instance["MainDicomTags"]["SOPInstanceUID"] for instance in found}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def running_orthanc(folder: Path, *, ae_title: str = "ORTHANC",
                          modalities: dict[str, tuple[str, str, int]] | None = None) -> AsyncIterator[Orthanc]:
    """Orthanc with ``modalities`` (name → (AE title, host, port)) in its DicomModalities, killed afterwards."""
    binary = shutil.which("Orthanc")
    if binary is None:
        unavailable("Debian's Orthanc (make tools installs it)")
        raise AssertionError("unreachable")
    dicom_port, http_port = free_port(), free_port()
    config = {
        "Name": "telerad-test", "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
        "DicomAet": ae_title, "DicomPort": dicom_port, "HttpPort": http_port, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "Plugins": [],
        "DicomModalities": {name: list(modality) for name, modality in (modalities or {}).items()},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
    log = folder / "orthanc.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            binary, str(folder / "orthanc.json"), env={**os.environ, "TCP_NODELAY": "1"},
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        orthanc = Orthanc(ae_title, dicom_port, f"http://127.0.0.1:{http_port}")
        await _started(process, orthanc, log)
        yield orthanc
    finally:
        if process.returncode is None:
            # Killed, not terminated: nothing of a test's Orthanc outlives it, and its orderly stop takes 3 s.
            process.kill()
            await process.wait()


async def _started(process: asyncio.subprocess.Process, orthanc: Orthanc, log: Path) -> None:
    deadline = asyncio.get_running_loop().time() + STARTUP_SECONDS
    async with aiohttp.ClientSession() as client:
        while asyncio.get_running_loop().time() < deadline:
            if process.returncode is not None:
                raise AssertionError(f"Orthanc exited with {process.returncode}: {log.read_text()[-3000:]}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with client.get(f"{orthanc.http_url}/system") as response:
                    if response.status == 200:
                        _, writer = await asyncio.open_connection("127.0.0.1", orthanc.dicom_port)
                        writer.close()
                        await writer.wait_closed()
                        return
            await asyncio.sleep(0.1)
    raise AssertionError(f"Orthanc did not start within {STARTUP_SECONDS:.0f} s: {log.read_text()[-3000:]}")
