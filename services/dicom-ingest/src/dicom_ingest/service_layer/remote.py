"""Remote PACS: register them, echo and query them, and run retrievals and sends as jobs.

Every DIMSE call blocks, so it runs in a thread: C-ECHO and C-FIND in ``asyncio.to_thread`` under a
deadline (the association is aborted when it passes), retrievals and sends in a pool of their own,
``remote_jobs_concurrency`` at a time. A job is a row first (queued), then running, then finished;
the process holding it writes its counts and a heartbeat every few seconds, and any process marks
interrupted the jobs whose heartbeat has gone stale (their process stopped or died).

Retrieved instances go the C-STORE way: over C-MOVE they arrive at the SCP from the remote's AE
title and address, which registering the remote PACS registered as a modality of the organisation;
over C-GET they arrive on our own association and :class:`ReceivedInstances` checks, writes and
indexes them exactly as the SCP would, for the remote PACS's organisation.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from time import monotonic
from typing import Any, Protocol, TypeVar
from uuid import UUID, uuid4

from dicom_ingest.adapters.index_queries import RetrievableInstance
from dicom_ingest.adapters.modalities import ModalityConflict, ModalityNotFound
from dicom_ingest.adapters.remote_pacs import (
    DimseClient,
    FindAnswer,
    Peer,
    Progress,
    RemotePacsExists,
    RemoteRefused,
    RemoteUnavailable,
    SqlRemoteJobs,
    SqlRemotePacsRegistry,
)
from dicom_ingest.adapters.storage import InstanceStorage
from dicom_ingest.config import DicomIngestSettings
from dicom_ingest.dicom.attributes import InvalidInstance, StoreStatusValues, read_instance
from dicom_ingest.dicom.query import Query, QueryRetrieveLevelValues, build_query
from dicom_ingest.domain.modalities import Modality
from dicom_ingest.domain.model import Discarder, Indexer, IndexOutcomeValues, StoreInstance, unreferenced_storage_key
from dicom_ingest.domain.remote_pacs import (
    Failure,
    FindLevelValues,
    Job,
    JobOperationValues,
    JobStatusValues,
    Outcome,
    RemotePacs,
    RetrieveMethodValues,
    SubOperations,
    find_identifier,
    retrieval_outcome,
    retrieve_identifier,
    transfer_status,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: C-STORE sub-operations one send may hold (the counts of PS3.7 Annex E are US).
MAX_SEND_INSTANCES = 65535
RESOLVE_TIMEOUT_SECONDS = 5.0


class ModalityRegistry(Protocol):
    def match(self, calling_ae_title: str, address: str) -> Modality | None: ...

    async def register(self, organization_id: UUID, ae_title: str, host: str | None = None,
                       description: str = "", port: int | None = None) -> Modality: ...

    async def unregister(self, organization_id: UUID, modality_id: UUID) -> None: ...


class IndexQueries(Protocol):
    async def instances(self, organization_id: UUID, query: Query, limit: int) -> list[RetrievableInstance]: ...




class RemoteTimeout(Exception):
    """The remote PACS did not finish a C-ECHO or C-FIND in time; its association was aborted."""


class NothingToSend(Exception):
    """The organisation holds no instance of that study (or series)."""


@dataclass(frozen=True)
class EchoResult:
    success: bool
    status: int | None
    detail: str
    elapsed_ms: int


# -- instances that come back over C-GET ---------------------------------------------------------------------------

@dataclass
class ReceivedInstances:
    """The C-STORE path of the SCP (``entrypoints/scp.py``) for sub-operations on an association we opened."""

    storage: InstanceStorage
    index: Indexer
    discard_if_unreferenced: Discarder
    index_timeout_seconds: float

    def store(self, event: Any, organization_id: UUID, calling_ae_title: str, loop: asyncio.AbstractEventLoop,
              study_instance_uid: str, series_instance_uid: str | None = None) -> tuple[int, str | None]:
        """Check, write and index one received instance, in the association's thread.

        Returns the C-STORE status and, when refused, why. An instance of another study (or series)
        than the one asked for is refused: a C-GET brings what it asked for, nothing else.
        """
        request = event.request
        uid = str(request.AffectedSOPInstanceUID or "")[:64]
        context = {"calling_ae_title": calling_ae_title, "sop_instance_uid": uid,
                   "organization_id": str(organization_id)}
        transfer_syntax = str(event.context.transfer_syntax)
        try:
            attributes = read_instance(request.DataSet.getvalue(), transfer_syntax)
            if (attributes.sop_instance_uid, attributes.sop_class_uid) != (
                    str(request.AffectedSOPInstanceUID), str(request.AffectedSOPClassUID)):
                raise InvalidInstance("SOP Instance or Class UID differs from the request's",
                                      StoreStatusValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS)
            if attributes.study_instance_uid != study_instance_uid or series_instance_uid not in (
                    None, attributes.series_instance_uid):
                raise InvalidInstance("the instance is not of the study or series retrieved",
                                      StoreStatusValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS)
        except InvalidInstance as error:
            log.warning("C-GET sub-operation refused: %s", error, extra=context)
            return error.status, f"refused (0x{error.status:04X}): {error}"
        except Exception:
            log.exception("C-GET sub-operation refused: unreadable data set", extra=context)
            return StoreStatusValues.CANNOT_UNDERSTAND, "refused (0xC000): the data set could not be read"
        try:
            data = event.encoded_dataset(include_meta=True)
            key = self.storage.put(data)
        except Exception:
            log.exception("C-GET sub-operation failed: could not write the file", extra=context)
            return StoreStatusValues.OUT_OF_RESOURCES, "failed (0xA700): the file could not be written"
        command = StoreInstance(organization_id, attributes, transfer_syntax, key, len(data), calling_ae_title)
        try:
            outcome = _on_loop(loop, self.index(command), self.index_timeout_seconds)
        except Exception:
            log.exception("C-GET sub-operation failed: could not index the instance", extra=context)
            self._discard(loop, key)
            return StoreStatusValues.OUT_OF_RESOURCES, "failed (0xA700): the instance could not be indexed"
        unreferenced = unreferenced_storage_key(outcome, key)
        if unreferenced is not None:  # the index committed: the copy not kept, or the one replaced
            self._discard(loop, unreferenced)
        if outcome == IndexOutcomeValues.CONFLICT:  # duplicate policy overwrite: an instance is never moved
            status = StoreStatusValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS
            return status, f"refused (0x{status:04X}): the SOP Instance UID is held in another study or series"
        return StoreStatusValues.SUCCESS, None

    def _discard(self, loop: asyncio.AbstractEventLoop, key: str) -> None:
        try:
            _on_loop(loop, self.discard_if_unreferenced(key), self.index_timeout_seconds)
        except Exception:
            log.exception("could not discard an unindexed file", extra={"storage_key": key})


def _on_loop(loop: asyncio.AbstractEventLoop, work: Awaitable[T], timeout: float) -> T:
    async def run() -> T:
        return await work
    return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout)


# -- jobs ----------------------------------------------------------------------------------------------------------

Work = Callable[[Progress], Outcome]


class JobRunner:
    """Runs jobs in a thread pool, at most ``concurrency`` at once, and keeps their rows alive."""

    def __init__(self, jobs: SqlRemoteJobs, *, concurrency: int, heartbeat_seconds: float,
                 stale_seconds: float) -> None:
        self.jobs = jobs
        self.heartbeat_seconds, self.stale_seconds = heartbeat_seconds, stale_seconds
        self._concurrency = concurrency
        self._slots: asyncio.Semaphore | None = None
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="remote-pacs-job")
        self._held: dict[UUID, Progress] = {}
        self._running: set[UUID] = set()
        self._tasks: dict[UUID, asyncio.Task[None]] = {}

    def submit(self, job_id: UUID, work: Work) -> asyncio.Task[None]:
        self._held[job_id] = Progress()
        task = asyncio.create_task(self._run(job_id, work), name=f"remote-pacs-job:{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._forget(job_id))
        return task

    async def wait(self) -> None:
        """Until every job submitted so far has finished (for tests)."""
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _run(self, job_id: UUID, work: Work) -> None:
        progress = self._held[job_id]
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._concurrency)
        try:
            async with self._slots:
                if not await self.jobs.start(job_id, _now()):
                    return  # interrupted while queued
                self._running.add(job_id)
                try:
                    outcome = await asyncio.get_running_loop().run_in_executor(self._executor, _safely, work,
                                                                               progress)
                except asyncio.CancelledError:
                    progress.cancel()
                    raise
                await self.jobs.finish(job_id, outcome, _now())
                log.info("remote PACS job %s: %s", job_id, outcome.status.value,
                         extra={"job_id": str(job_id), "status": outcome.status.value,
                                "completed": outcome.counts.completed, "failed": outcome.counts.failed})
        except asyncio.CancelledError:
            counts, failures = progress.snapshot()
            await self.jobs.finish(job_id, Outcome(JobStatusValues.INTERRUPTED, counts, failures,
                                                   detail="the service stopped before the job finished"), _now())
            raise
        except Exception:  # the job's row could not be written: a replica marks it interrupted once stale
            log.exception("remote PACS job %s could not be recorded", job_id, extra={"job_id": str(job_id)})

    def _forget(self, job_id: UUID) -> None:
        self._held.pop(job_id, None)
        self._running.discard(job_id)
        self._tasks.pop(job_id, None)

    async def keep_alive(self) -> None:
        """Background task: heartbeats and counts of this process's jobs; stale jobs of gone ones interrupted."""
        while True:
            now = _now()
            await self.jobs.beat([job_id for job_id in self._held if job_id not in self._running], now)
            for job_id in list(self._running):
                if (progress := self._held.get(job_id)) is not None:
                    await self.jobs.progress(job_id, *progress.snapshot(), now)
            await self.interrupt_stale(now)
            await asyncio.sleep(self.heartbeat_seconds)

    async def interrupt_stale(self, now: datetime | None = None) -> int:
        now = now or _now()
        interrupted = await self.jobs.interrupt_stale(
            now - timedelta(seconds=self.stale_seconds),
            "the process running the job stopped or vanished (no heartbeat)", now)
        if interrupted:
            log.warning("%d remote PACS jobs interrupted: their process stopped", interrupted)
        return interrupted

    async def stop(self) -> None:
        """Abort running jobs' associations and mark them interrupted."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)


def _safely(work: Work, progress: Progress) -> Outcome:
    try:
        return work(progress)
    except (RemoteUnavailable, RemoteRefused) as error:
        counts, failures = progress.snapshot()
        return Outcome(JobStatusValues.FAILED, counts, failures, detail=str(error))
    except Exception as error:
        log.exception("remote PACS job failed")
        counts, failures = progress.snapshot()
        return Outcome(JobStatusValues.FAILED, counts, failures, detail=f"internal error: {type(error).__name__}")


def _now() -> datetime:
    return datetime.now(UTC)


# -- the exchange --------------------------------------------------------------------------------------------------

@dataclass
class RemoteExchange:
    settings: DicomIngestSettings
    registry: SqlRemotePacsRegistry
    jobs: SqlRemoteJobs
    runner: JobRunner
    modalities: ModalityRegistry
    dimse: DimseClient
    index_queries: IndexQueries
    storage: InstanceStorage
    received: ReceivedInstances

    # registrations

    async def register(self, organization_id: UUID, *, ae_title: str, host: str, port: int, description: str = "",
                       calling_ae_title: str | None = None) -> RemotePacs:
        """Raises :class:`RemotePacsExists` for a clash (its AE title in the organisation, or its AE title and
        address as another organisation's modality), ValueError for a host that does not resolve."""
        if await self.registry.with_ae_title(organization_id, ae_title) is not None:
            raise RemotePacsExists(f"the organisation has a remote PACS {ae_title} already")
        address = await resolve(host)
        modality = self.modalities.match(ae_title, address)
        if modality is not None and modality.organization_id != organization_id:
            raise RemotePacsExists(f"{ae_title} at {address} sends for another organisation: its C-MOVE "
                                   f"sub-operations could not be told apart")
        modality_id = None
        if modality is None:
            try:
                created = await self.modalities.register(
                    organization_id, ae_title, address, f"remote PACS {ae_title}: its C-MOVE sub-operations")
            except ModalityConflict as error:
                raise RemotePacsExists(str(error)) from None
            modality_id = created.id
        remote = RemotePacs(id=uuid4(), organization_id=organization_id, ae_title=ae_title, host=host, port=port,
                            description=description, created_at=_now(), calling_ae_title=calling_ae_title,
                            modality_id=modality_id)
        try:
            await self.registry.add(remote)
        except BaseException:
            if modality_id is not None:
                await self._unregister_modality(organization_id, modality_id)
            raise
        return remote

    async def unregister(self, organization_id: UUID, remote_pacs_id: UUID) -> RemotePacs:
        remote = await self.registry.remove(organization_id, remote_pacs_id)
        if remote.modality_id is not None:
            await self._unregister_modality(organization_id, remote.modality_id)
        return remote

    async def _unregister_modality(self, organization_id: UUID, modality_id: UUID) -> None:
        try:
            await self.modalities.unregister(organization_id, modality_id)
        except ModalityNotFound:
            pass  # removed by hand already

    # C-ECHO, C-FIND

    async def echo(self, organization_id: UUID, remote_pacs_id: UUID) -> EchoResult:
        remote = await self.registry.get(organization_id, remote_pacs_id)
        started = monotonic()
        try:
            status = await self._blocking(self._bounded.echo, self._peer(remote))
        except (RemoteUnavailable, RemoteTimeout) as error:
            return EchoResult(False, None, str(error), _elapsed(started))
        return EchoResult(status == 0x0000, status, "success" if status == 0 else f"status 0x{status:04X}",
                          _elapsed(started))

    async def find(self, organization_id: UUID, remote_pacs_id: UUID, level: FindLevelValues,
                   keys: dict[str, str], limit: int) -> FindAnswer:
        """Raises ValueError for keys the identifier cannot hold, :class:`RemoteUnavailable`,
        :class:`RemoteRefused` or :class:`RemoteTimeout` when the remote PACS does not answer well."""
        remote = await self.registry.get(organization_id, remote_pacs_id)
        identifier = find_identifier(level, keys)
        answer: FindAnswer = await self._blocking(self._bounded.find, self._peer(remote), identifier, limit)
        return answer

    async def _blocking(self, call: Callable[..., T], *args: Any) -> T:
        """``call(*args, progress)`` in a thread, under the request deadline; the association's own timeouts
        end a second later, so the deadline speaks first and aborts it."""
        progress = Progress()
        try:
            return await asyncio.wait_for(asyncio.to_thread(call, *args, progress),
                                          self.settings.remote_request_timeout_seconds)
        except TimeoutError:
            progress.cancel()
            raise RemoteTimeout(f"the remote PACS did not answer within "
                                f"{self.settings.remote_request_timeout_seconds:g} s") from None
        except asyncio.CancelledError:
            progress.cancel()
            raise

    # jobs

    async def retrieve(self, organization_id: UUID, requested_by: UUID | None, remote_pacs_id: UUID,
                       study_instance_uid: str, series_instance_uid: str | None,
                       method: RetrieveMethodValues) -> Job:
        remote = await self.registry.get(organization_id, remote_pacs_id)
        identifier = retrieve_identifier(study_instance_uid, series_instance_uid)
        peer = self._peer(remote)
        loop = asyncio.get_running_loop()

        def move(progress: Progress) -> Outcome:
            answer = self.dimse.move(peer, identifier, self.settings.ae_title, progress)
            return _retrieved(answer.final_status, answer.comment, answer.failed_sop_instance_uids, progress,
                              "the remote PACS reports this C-STORE sub-operation to Telerad failed")

        def get(progress: Progress) -> Outcome:
            try:
                sop_classes = self.dimse.sop_classes(peer, study_instance_uid, series_instance_uid, progress)
            except RemoteRefused:
                sop_classes = []  # it would not say: offer every storage SOP class

            def on_store(event: Any) -> int:
                status, reason = self.received.store(event, organization_id, remote.ae_title, loop,
                                                     study_instance_uid, series_instance_uid)
                if reason is not None:
                    progress.fail(str(event.request.AffectedSOPInstanceUID or "")[:64], reason)
                return status

            answer = self.dimse.get(peer, identifier, sop_classes, on_store, progress)
            return _retrieved(answer.final_status, answer.comment, answer.failed_sop_instance_uids, progress,
                              "the remote PACS reports this C-STORE sub-operation failed (no presentation "
                              "context for its SOP class and transfer syntax, or it could not read it)")

        operation = JobOperationValues.MOVE if method is RetrieveMethodValues.MOVE else JobOperationValues.GET
        return await self._submit(remote, requested_by, operation, study_instance_uid, series_instance_uid,
                                  move if method is RetrieveMethodValues.MOVE else get)

    async def send(self, organization_id: UUID, requested_by: UUID | None, remote_pacs_id: UUID,
                   study_instance_uid: str, series_instance_uid: str | None = None) -> Job:
        """Raises :class:`NothingToSend` when the organisation holds no instance of it."""
        remote = await self.registry.get(organization_id, remote_pacs_id)
        retrieve_identifier(study_instance_uid, series_instance_uid)  # the UIDs are UIDs
        keys = {"StudyInstanceUID": study_instance_uid}
        level = QueryRetrieveLevelValues.STUDY
        if series_instance_uid is not None:
            keys["SeriesInstanceUID"], level = series_instance_uid, QueryRetrieveLevelValues.SERIES
        instances = await self.index_queries.instances(organization_id, build_query(level, keys),
                                                       MAX_SEND_INSTANCES + 1)
        if not instances:
            raise NothingToSend("no such study" if series_instance_uid is None else "no such series")
        if len(instances) > MAX_SEND_INSTANCES:
            raise ValueError(f"more than {MAX_SEND_INSTANCES} instances: send the study series by series")
        peer = self._peer(remote)

        def send(progress: Progress) -> Outcome:
            self.dimse.store(peer, instances, lambda instance: self.storage.get(instance.storage_key), progress)
            counts, failures = progress.snapshot()
            done = SubOperations(counts.completed, counts.failed, counts.warning, 0)
            status = transfer_status(done)
            detail = failures[0].reason if status is JobStatusValues.FAILED and failures else None
            return Outcome(status, done, failures, detail=detail)

        return await self._submit(remote, requested_by, JobOperationValues.SEND, study_instance_uid,
                                  series_instance_uid, send, remaining=len(instances))

    async def _submit(self, remote: RemotePacs, requested_by: UUID | None, operation: JobOperationValues,
                      study_instance_uid: str, series_instance_uid: str | None, work: Work,
                      remaining: int | None = None) -> Job:
        now = _now()
        job = Job(id=uuid4(), organization_id=remote.organization_id, remote_pacs_id=remote.id,
                  remote_ae_title=remote.ae_title, operation=operation, status=JobStatusValues.QUEUED,
                  study_instance_uid=study_instance_uid, series_instance_uid=series_instance_uid, created_at=now,
                  requested_by=requested_by, counts=SubOperations(remaining=remaining))
        await self.jobs.add(job, now)
        self.runner.submit(job.id, work)
        log.info("remote PACS job queued", extra={"job_id": str(job.id), "operation": operation.value,
                                                  "remote_ae_title": remote.ae_title,
                                                  "organization_id": str(remote.organization_id)})
        return job

    @property
    def _bounded(self) -> DimseClient:
        return self.dimse.within(self.settings.remote_request_timeout_seconds + 1)

    def _peer(self, remote: RemotePacs) -> Peer:
        return Peer(remote.host, remote.port, remote.ae_title, remote.our_ae_title(self.settings.ae_title))


def _retrieved(final_status: int | None, comment: str, failed_uids: tuple[str, ...], progress: Progress,
               reason: str) -> Outcome:
    """The outcome of a C-MOVE or C-GET; failures we know the reason of keep it, the others get ``reason``."""
    counts, failures = progress.snapshot()
    known = {failure.sop_instance_uid for failure in failures}
    failures += tuple(Failure(uid, reason) for uid in failed_uids if uid not in known)
    return retrieval_outcome(final_status, counts, failures, comment)


def _elapsed(started: float) -> int:
    return round((monotonic() - started) * 1000)


async def resolve(host: str) -> str:
    """The address C-MOVE sub-operations from ``host`` come from, as far as a registration can tell.

    Raises
    ------
    ValueError
        When the name does not resolve in time.
    """
    try:
        return str(ip_address(host))
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        found = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM),
                                       RESOLVE_TIMEOUT_SECONDS)
    except (OSError, TimeoutError):
        raise ValueError(f"host {host} does not resolve to an address") from None
    if not found:
        raise ValueError(f"host {host} does not resolve to an address")
    return str(ip_address(str(found[0][4][0]).split("%", 1)[0]))

