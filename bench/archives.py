"""The archives under test, each started fresh and empty for one run and stopped after it.

* :func:`telerad` — dicom-ingest in distributed mode, in a process of its own
  (:mod:`bench.telerad_ingest`), on a new PostgreSQL database and a new RabbitMQ virtual host, with
  its default settings (fsync of every file, as Orthanc's default ``SyncStorageArea``).
* :func:`orthanc` — ``Orthanc <config.json>`` with a temporary storage and index, free DICOM and HTTP
  ports and default settings otherwise (SQLite index). Orthanc 1.10 has no bind-address option: its
  DICOM port listens on every interface while it runs; HTTP refuses remote clients.

DCMTK leaves Nagle's algorithm on unless ``TCP_NODELAY=1`` is in its environment
(shared/reference/performance.md §2.4), so Orthanc (built on DCMTK) gets it; dicom-ingest sets
TCP_NODELAY on its accepted sockets itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiohttp
import asyncpg
from sqlalchemy.engine import make_url

from bench.core import BenchContext

REPO = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ArchiveUnavailable(RuntimeError):
    """A server or tool the benchmark needs is missing or did not start."""


@dataclass
class Archive:
    """A running archive: where to send, how to count what it holds, which processes do its work."""

    name: str
    ae_title: str
    dicom_port: int
    pids: list[int] = field(default_factory=list)
    #: Also PostgreSQL backends serving it (found at each reading).
    database: str = ""
    postgres_dsn: str = ""
    http_url: str = ""

    async def instance_count(self) -> int:
        if self.http_url:
            async with aiohttp.ClientSession() as client, client.get(f"{self.http_url}/statistics") as response:
                response.raise_for_status()
                return int((await response.json())["CountInstances"])
        connection = await asyncpg.connect(self.postgres_dsn)
        try:
            return int(await connection.fetchval("SELECT count(*) FROM instances"))
        finally:
            await connection.close()

    async def cpu_seconds(self) -> dict[int, float]:
        """User + system CPU time of every process doing this archive's work, by pid (``/proc/<pid>/stat``)."""
        pids = [*self.pids, *(child for pid in self.pids for child in descendants(pid))]
        if self.database:
            connection = await asyncpg.connect(_admin_dsn(self.postgres_dsn))
            try:
                rows = await connection.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", self.database)
            finally:
                await connection.close()
            pids += [int(row["pid"]) for row in rows]
        return {pid: seconds for pid in pids if (seconds := process_cpu_seconds(pid)) is not None}


def own_processes(archive: Archive, pids: Iterable[int]) -> list[int]:
    """Of ``pids``, the archive's processes and their children (not its PostgreSQL backends)."""
    own = set(archive.pids) | {child for pid in archive.pids for child in descendants(pid)}
    return [pid for pid in pids if pid in own]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Telerad's SCP workers), from ``/proc/<pid>/task/*/children``."""
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            direct = [int(child) for child in children.read_text().split()]
        except (OSError, ValueError):
            continue
        for child in direct:
            found += [child, *descendants(child)]
    return found


def process_cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (proc(5), fields 14 and 15)


def cpu_used(before: dict[int, float], after: dict[int, float], only: list[int] | None = None) -> float:
    """CPU seconds spent between two readings (by the processes ``only``, if given); a process first
    seen in ``after`` counts from zero."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items() if only is None or pid in only)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _admin_dsn(dsn: str) -> str:
    return make_url(dsn).set(database="postgres").render_as_string(hide_password=False)


async def _run(*command: str) -> None:
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise ArchiveUnavailable(f"{' '.join(command)} failed: {output.decode(errors='replace').strip()}")


@contextlib.asynccontextmanager
async def rabbitmq_vhost(amqp_url: str) -> AsyncIterator[str]:
    """A virtual host of its own, so queue names never meet a running platform's or a test's."""
    vhost = f"telerad-bench-{uuid.uuid4().hex[:12]}"
    await _run("rabbitmqctl", "-q", "add_vhost", vhost)
    try:
        await _run("rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield amqp_url.rstrip("/") + "/" + quote(vhost, safe="")
    finally:
        with contextlib.suppress(ArchiveUnavailable):
            await _run("rabbitmqctl", "-q", "delete_vhost", vhost)


@contextlib.asynccontextmanager
async def postgres_database(postgres_url: str, service: str) -> AsyncIterator[str]:
    """The URL of a database that does not exist yet (the service creates it), dropped afterwards."""
    url = f"{postgres_url.rstrip('/')}/bench_{service.replace('-', '_')}_{uuid.uuid4().hex[:10]}"
    try:
        yield url
    finally:
        admin = await asyncpg.connect(_admin_dsn(_asyncpg_dsn(url)))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
        finally:
            await admin.close()


async def _stop(process: asyncio.subprocess.Process, grace: float = 20) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        process.kill()
        await process.wait()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(empty log)"
    except OSError:
        return "(no log)"


@contextlib.asynccontextmanager
async def telerad(ctx: BenchContext, run_dir: Path, *, env: Mapping[str, str] | None = None
                  ) -> AsyncIterator[Archive]:
    """dicom-ingest, distributed: its own process, PostgreSQL database and RabbitMQ virtual host (``env``: more
    settings)."""
    await asyncio.to_thread(run_dir.mkdir, parents=True)
    log = run_dir / "dicom-ingest.log"
    async with rabbitmq_vhost(ctx.settings.amqp_url) as amqp_url, \
            postgres_database(ctx.settings.postgres_url, "dicom-ingest") as database_url:
        env = {**os.environ, "TELERAD_DATA_DIR": str(run_dir), "TELERAD_AMQP_URL": amqp_url,
               "TELERAD_POSTGRES_URL": ctx.settings.postgres_url, "DICOM_INGEST_DATABASE_URL": database_url,
               "DICOM_INGEST_STORAGE_DIR": str(run_dir / "dicom"), "DICOM_INGEST_DICOM_PORT": "0",
               "DICOM_INGEST_HTTP_PORT": "0", "DICOM_INGEST_FSYNC": "true",
               "DICOM_INGEST_SCP_PROCESSES": str(ctx.settings.telerad_scp_processes), **(env or {})}
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.telerad_ingest", cwd=REPO, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=stderr, start_new_session=True)
        try:
            assert process.stdout is not None
            try:
                line = await asyncio.wait_for(process.stdout.readline(), 90)
                port = int(json.loads(line)["dicom_port"])
            except (TimeoutError, ValueError, KeyError) as error:
                raise ArchiveUnavailable(f"dicom-ingest did not start ({type(error).__name__}); "
                                         f"its log ends:\n{_tail(log)}") from None
            dsn = _asyncpg_dsn(database_url)
            yield Archive("Telerad", "TELERAD", port, [process.pid], database=make_url(dsn).database or "",
                          postgres_dsn=dsn)
        finally:
            await _stop(process)


@contextlib.asynccontextmanager
async def orthanc(ctx: BenchContext, run_dir: Path, *, plugins: tuple[str, ...] = ()) -> AsyncIterator[Archive]:
    """``Orthanc config.json``: empty storage, default settings but for ports and paths (and ``plugins`` to load)."""
    binary = shutil.which(ctx.settings.orthanc)
    if binary is None:
        raise ArchiveUnavailable(f"{ctx.settings.orthanc} is not installed (make tools installs Debian's orthanc)")
    dicom_port, http_port = free_port(), free_port()
    config = {"Name": "telerad-bench", "StorageDirectory": str(run_dir / "storage"),
              "IndexDirectory": str(run_dir / "index"), "DicomAet": "ORTHANC", "DicomPort": dicom_port,
              "HttpPort": http_port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False}
    if plugins:
        config["Plugins"] = list(plugins)
    await asyncio.to_thread(_write_config, run_dir, config)
    log = run_dir / "orthanc.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            binary, str(run_dir / "orthanc.json"), env={**os.environ, "TCP_NODELAY": "1"},
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        http_url = f"http://127.0.0.1:{http_port}"
        await _wait_for_orthanc(process, http_url, dicom_port, log)
        yield Archive("Orthanc", "ORTHANC", dicom_port, [process.pid], http_url=http_url)
    finally:
        await _stop(process)


def _write_config(run_dir: Path, config: dict[str, object]) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "orthanc.json").write_text(json.dumps(config, indent=2))


async def _wait_for_orthanc(process: asyncio.subprocess.Process, http_url: str, dicom_port: int, log: Path,
                            within: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + within
    async with aiohttp.ClientSession() as client:
        while asyncio.get_running_loop().time() < deadline:
            if process.returncode is not None:
                raise ArchiveUnavailable(f"Orthanc exited with {process.returncode}; its log ends:\n{_tail(log)}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with client.get(f"{http_url}/system") as response:
                    if response.status == 200:
                        _, writer = await asyncio.open_connection("127.0.0.1", dicom_port)
                        writer.close()
                        await writer.wait_closed()
                        return
            await asyncio.sleep(0.1)
    raise ArchiveUnavailable(f"Orthanc did not answer on {http_url} within {within:.0f} s; its log ends:\n"
                             f"{_tail(log)}")


async def orthanc_version(binary: str) -> str:
    return await first_line_of(binary, "--version")


async def first_line_of(*command: str) -> str:
    try:
        process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.STDOUT)
        output, _ = await asyncio.wait_for(process.communicate(), 30)
    except (OSError, TimeoutError):
        return "not installed"
    lines = output.decode(errors="replace").strip().splitlines()
    return lines[0].strip() if lines else "unknown"


@dataclass(frozen=True)
class RunningPlatform:
    gateway_url: str
    dicom_port: int
    amqp_url: str
    database_urls: dict[str, str]


PLATFORM_DATABASES = ("identity", "worklist", "reporting", "signature", "dicom-ingest")


@contextlib.asynccontextmanager
async def telerad_platform(ctx: BenchContext, run_dir: Path, password: str,
                           **env: str) -> AsyncIterator[RunningPlatform]:
    """Every service, distributed, in a process of its own (``bench.telerad_platform``): a RabbitMQ virtual
    host and a PostgreSQL database per service of their own; ``env`` adds or overrides settings."""
    await asyncio.to_thread(run_dir.mkdir, parents=True)
    log = run_dir / "platform.log"
    async with contextlib.AsyncExitStack() as stack:
        amqp_url = await stack.enter_async_context(rabbitmq_vhost(ctx.settings.amqp_url))
        urls = {name: await stack.enter_async_context(postgres_database(ctx.settings.postgres_url, name))
                for name in PLATFORM_DATABASES}
        settings = {"TELERAD_DATA_DIR": str(run_dir), "TELERAD_AMQP_URL": amqp_url,
                    **{f"{name.upper().replace('-', '_')}_DATABASE_URL": url for name, url in urls.items()},
                    **{f"{name.upper().replace('-', '_')}_HTTP_PORT": "0" for name in (*PLATFORM_DATABASES, "gateway")},
                    "IDENTITY_SECRET_KEY": "a" * 43 + "=", "SIGNATURE_SECRET_KEY": "b" * 43 + "=",
                    "DICOM_INGEST_DICOM_PORT": "0", "GATEWAY_USER_BURST": "100000",
                    "GATEWAY_USER_PER_SECOND": "100000", "BENCH_DEMO_PASSWORD": password,
                    "TELERAD_LOG_LEVEL": "WARNING", **env}
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.telerad_platform", cwd=REPO, env={**os.environ, **settings},
                stdout=asyncio.subprocess.PIPE, stderr=stderr, start_new_session=True)
        try:
            assert process.stdout is not None
            try:
                started = json.loads(await asyncio.wait_for(process.stdout.readline(), 120))
            except (TimeoutError, ValueError) as error:
                raise ArchiveUnavailable(f"the platform did not start ({type(error).__name__}); its log ends:\n"
                                         f"{_tail(log)}") from None
            yield RunningPlatform(started["gateway_url"], int(started["dicom_port"]), amqp_url, urls)
        finally:
            await _stop(process)

