"""The DIMSE SCP in several worker processes sharing one port, so ingest is not held to one core.

pynetdicom runs every association in threads of one interpreter: however many associations, they
share one GIL, and a busy SCP stops at about one core. With ``scp_processes`` = N > 1 the service
starts N processes (``python -m dicom_ingest.scp_worker``), each a complete SCP of its own (storage,
verification, query/retrieve, the connection caps and limits of
:mod:`~dicom_ingest.adapters.hardened_transport`, an index writer) over the service's database and
files. Each listens on the same address with ``SO_REUSEPORT``, and the kernel spreads new connections
among them. The service's own process keeps the port bound without listening, so the port is known
(also an ephemeral one) and stays the service's while a worker restarts.

A worker gets its settings as one JSON line on its standard input and answers ``{"ready": pid}`` on
its standard output once listening. It stops when its standard input closes, so no worker outlives
the service, even one killed with SIGKILL. A worker that dies is started again after a pause that
doubles up to a minute. Studies are announced by the service process as before (the settle monitor
reads the index every worker writes to).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

from dicom_ingest.config import DicomIngestSettings

log = logging.getLogger(__name__)

WORKER_MODULE = "dicom_ingest.scp_worker"


@dataclass
class _Worker:
    number: int
    process: asyncio.subprocess.Process | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class WorkerFailed(RuntimeError):
    pass


class ScpWorkerPool:
    """``settings.scp_processes`` SCP worker processes on one port; ``start``, ``stop``, ``port`` and
    ``listening`` as :class:`~dicom_ingest.entrypoints.scp.StorageSCP` has them."""

    def __init__(self, settings: DicomIngestSettings, log_level: str, log_format: str, *,
                 start_timeout: float = 60, stop_timeout: float = 15, restart_delay: float = 1,
                 max_restart_delay: float = 60) -> None:
        self.settings = settings
        self.log_level = log_level
        self.log_format = log_format
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.restart_delay = restart_delay
        self.max_restart_delay = max_restart_delay
        self._workers = [_Worker(number) for number in range(settings.scp_processes)]
        self._reservation: socket.socket | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def port(self) -> int:
        assert self._reservation is not None
        return int(self._reservation.getsockname()[1])

    @property
    def listening(self) -> bool:
        return any(worker.ready.is_set() for worker in self._workers)

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process is not None and w.process.returncode is None]

    async def start(self) -> None:
        """Bind the port, start every worker and return once all listen (else stop them and raise)."""
        self._reservation = reserve_port(self.settings.dicom_host, self.settings.dicom_port)
        self._stopping = False
        self._tasks = [asyncio.create_task(self._keep_running(worker), name=f"scp-worker-{worker.number}")
                       for worker in self._workers]
        all_ready: asyncio.Future[Any] = asyncio.ensure_future(
            asyncio.gather(*(worker.ready.wait() for worker in self._workers)))
        try:
            pending: list[asyncio.Future[Any]] = [all_ready, *self._tasks]
            done, _ = await asyncio.wait(pending, timeout=self.start_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if all_ready not in done:
                failures = [str(task.exception()) for task in self._tasks if task in done and task.exception()]
                raise WorkerFailed("the DICOM SCP workers did not start: " + ("; ".join(failures) or
                                   f"not all listening after {self.start_timeout:.0f} s"))
        except BaseException:
            all_ready.cancel()
            await self.stop()
            raise
        log.info("DICOM SCP listening in %d processes", len(self._workers),
                 extra={"ae_title": self.settings.ae_title, "port": self.port, "pids": self.pids()})

    async def stop(self) -> None:
        self._stopping = True
        await asyncio.gather(*(self._stop_worker(worker) for worker in self._workers))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, WorkerFailed):
                await task
        self._tasks = []
        if self._reservation is not None:
            self._reservation.close()
            self._reservation = None

    async def _keep_running(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        delay, first_life = self.restart_delay, True
        while not self._stopping:
            started = loop.time()
            returncode, was_ready = await self._run(worker)
            if self._stopping:
                return
            if first_life and not was_ready:
                raise WorkerFailed(f"worker {worker.number} exited with {returncode} before listening")
            first_life = False
            if loop.time() - started > self.max_restart_delay:
                delay = self.restart_delay  # it had been running a while: a new failure, not a crash loop
            log.error("DICOM SCP worker %d exited with %s; starting it again in %.0f s", worker.number, returncode,
                      delay, extra={"worker": worker.number, "returncode": returncode})
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_restart_delay)

    async def _run(self, worker: _Worker) -> tuple[int, bool]:
        """One life of a worker process: start it, hand it its settings, wait for ready, then for its end."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", WORKER_MODULE, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        worker.process = process
        assert process.stdin is not None and process.stdout is not None
        spec = {"settings": self.settings.model_copy(update={"dicom_port": self.port}).model_dump(mode="json"),
                "worker": worker.number, "log_level": self.log_level, "log_format": self.log_format}
        process.stdin.write(json.dumps(spec).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await process.stdin.drain()
        line = await process.stdout.readline()
        try:
            ready = json.loads(line) if line else {}
        except ValueError:
            ready = {}
        if ready.get("ready") == process.pid:
            worker.ready.set()
            log.info("DICOM SCP worker %d listening (pid %d)", worker.number, process.pid,
                     extra={"worker": worker.number, "pid": process.pid})
        else:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        was_ready = worker.ready.is_set()
        returncode = await process.wait()
        worker.ready.clear()
        return returncode, was_ready

    async def _stop_worker(self, worker: _Worker) -> None:
        process = worker.process
        if process is None or process.returncode is not None:
            return
        if process.stdin is not None:
            process.stdin.close()  # the worker's cue: it stops accepting, finishes what it has and exits
        try:
            await asyncio.wait_for(process.wait(), self.stop_timeout)
        except TimeoutError:
            log.warning("DICOM SCP worker %d did not stop in %.0f s; killing it", worker.number, self.stop_timeout)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT that never listens: it holds the port for the
    workers, and the kernel gives it no connections (only listening sockets share them)."""
    reservation = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reservation.bind((host, port))
    except BaseException:
        reservation.close()
        raise
    return reservation
