"""Remote PACS: their registrations and jobs in the database, and the DIMSE SCU that talks to them.

The SCU (:class:`DimseClient`) is pynetdicom, blocking: every call runs in a worker thread, never on
the event loop. Each call opens one association (PS3.8 §7.1) and releases it; a :class:`Progress`
shared with the caller holds the live association, so the caller can abort it (a timeout, a
shutdown), and the counts of sub-operations as the remote reports them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from io import BytesIO
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, StoragePresentationContexts, build_context, build_role, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, col, delete, select, update

from dicom_ingest.adapters.index_queries import RetrievableInstance
from dicom_ingest.domain.remote_pacs import (
    MAX_FAILURES_KEPT,
    Failure,
    Job,
    JobOperationValues,
    JobStatusValues,
    Outcome,
    RemotePacs,
    SubOperations,
    status_meaning,
)
from radcommon.db import Database

log = logging.getLogger(__name__)

FIND, MOVE, GET = (StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelMove,
                   StudyRootQueryRetrieveInformationModelGet)
#: Presentation contexts one association may propose (PS3.8 §9.3.2.2: odd IDs 1-255).
MAX_CONTEXTS = 128
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
#: What a C-GET offers to receive as sent, beside the uncompressed syntaxes, when there is room.
COMPRESSED = (JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless,
              JPEGLSNearLossless, JPEG2000Lossless, JPEG2000, RLELossless)
_PENDING = (0xFF00, 0xFF01)
#: Responses read past a C-CANCEL before giving up on the remote and aborting.
_DRAIN_AFTER_CANCEL = 10_000


# -- tables --------------------------------------------------------------------------------------------------------

def _aware(nullable: bool = False) -> Any:
    return sa.Column(sa.DateTime(timezone=True), nullable=nullable)


class RemotePacsRow(SQLModel, table=True):
    __tablename__ = "remote_pacs"
    __table_args__ = (sa.UniqueConstraint("organization_id", "ae_title"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    organization_id: UUID = Field(index=True)
    ae_title: str = Field(max_length=16)
    host: str = Field(max_length=253)
    port: int
    description: str = Field(default="", max_length=200)
    calling_ae_title: str | None = Field(default=None, max_length=16)
    modality_id: UUID | None = None
    created_at: datetime = Field(sa_column=_aware())


class RemoteJobRow(SQLModel, table=True):
    __tablename__ = "remote_pacs_jobs"
    __table_args__ = (sa.Index("remote_pacs_jobs_by_organization", "organization_id", "created_at"),
                      sa.Index("remote_pacs_jobs_by_status", "status", "heartbeat_at"))

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    organization_id: UUID
    remote_pacs_id: UUID
    remote_ae_title: str = Field(max_length=16)
    operation: str = Field(max_length=8)
    status: str = Field(max_length=32)
    study_instance_uid: str = Field(max_length=64)
    series_instance_uid: str | None = Field(default=None, max_length=64)
    requested_by: UUID | None = None
    created_at: datetime = Field(sa_column=_aware())
    started_at: datetime | None = Field(default=None, sa_column=_aware(nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=_aware(nullable=True))
    #: Written every few seconds by the process running (or queueing) the job; a stale one means it is gone.
    heartbeat_at: datetime = Field(sa_column=_aware())
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int | None = None
    failures: list[dict[str, str]] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    final_status: int | None = None
    detail: str | None = Field(default=None, max_length=1024)


class RemotePacsExists(Exception):
    """The organisation has a remote PACS of that AE title already."""


class RemotePacsNotFound(Exception):
    pass


class JobNotFound(Exception):
    pass


class SqlRemotePacsRegistry:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, remote: RemotePacs) -> None:
        """Raises :class:`RemotePacsExists` when the organisation has that AE title already."""
        async with self.db.session() as session:
            session.add(RemotePacsRow(**remote.__dict__))
            try:
                await session.commit()
            except IntegrityError:
                raise RemotePacsExists(f"the organisation has a remote PACS {remote.ae_title} already") from None

    async def get(self, organization_id: UUID, remote_pacs_id: UUID) -> RemotePacs:
        async with self.db.session() as session:
            row = (await session.execute(select(RemotePacsRow).where(
                col(RemotePacsRow.id) == remote_pacs_id,
                col(RemotePacsRow.organization_id) == organization_id))).scalar_one_or_none()
        if row is None:
            raise RemotePacsNotFound(str(remote_pacs_id))
        return _remote(row)

    async def with_ae_title(self, organization_id: UUID, ae_title: str) -> RemotePacs | None:
        async with self.db.session() as session:
            row = (await session.execute(select(RemotePacsRow).where(
                col(RemotePacsRow.organization_id) == organization_id,
                col(RemotePacsRow.ae_title) == ae_title))).scalar_one_or_none()
        return None if row is None else _remote(row)

    async def of_organization(self, organization_id: UUID) -> list[RemotePacs]:
        async with self.db.session() as session:
            rows = (await session.execute(select(RemotePacsRow).where(
                col(RemotePacsRow.organization_id) == organization_id).order_by(
                col(RemotePacsRow.ae_title)))).scalars().all()
        return [_remote(row) for row in rows]

    async def remove(self, organization_id: UUID, remote_pacs_id: UUID) -> RemotePacs:
        """The registration removed; raises :class:`RemotePacsNotFound` unless the organisation had it."""
        remote = await self.get(organization_id, remote_pacs_id)
        async with self.db.session() as session:
            result = await session.execute(delete(RemotePacsRow).where(
                col(RemotePacsRow.id) == remote_pacs_id, col(RemotePacsRow.organization_id) == organization_id))
            if not result.rowcount:  # type: ignore[attr-defined]
                raise RemotePacsNotFound(str(remote_pacs_id))
            await session.commit()
        return remote


class SqlRemoteJobs:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, job: Job, now: datetime) -> None:
        async with self.db.session() as session:
            session.add(RemoteJobRow(
                id=job.id, organization_id=job.organization_id, remote_pacs_id=job.remote_pacs_id,
                remote_ae_title=job.remote_ae_title, operation=job.operation.value, status=job.status.value,
                study_instance_uid=job.study_instance_uid, series_instance_uid=job.series_instance_uid,
                requested_by=job.requested_by, created_at=job.created_at, heartbeat_at=now,
                remaining=job.counts.remaining))
            await session.commit()

    async def get(self, organization_id: UUID, job_id: UUID) -> Job:
        async with self.db.session() as session:
            row = (await session.execute(select(RemoteJobRow).where(
                col(RemoteJobRow.id) == job_id, col(RemoteJobRow.organization_id) == organization_id))
            ).scalar_one_or_none()
        if row is None:
            raise JobNotFound(str(job_id))
        return _job(row)

    async def recent(self, organization_id: UUID, limit: int) -> list[Job]:
        async with self.db.session() as session:
            rows = (await session.execute(select(RemoteJobRow).where(
                col(RemoteJobRow.organization_id) == organization_id).order_by(
                col(RemoteJobRow.created_at).desc(), col(RemoteJobRow.id)).limit(limit))).scalars().all()
        return [_job(row) for row in rows]

    async def start(self, job_id: UUID, now: datetime) -> bool:
        """Queued to running; False when it is no longer queued (interrupted meanwhile)."""
        return await self._unfinished(job_id, status=JobStatusValues.RUNNING.value, started_at=now, heartbeat_at=now)

    async def beat(self, job_ids: Sequence[UUID], now: datetime) -> None:
        if job_ids:
            await self._update(col(RemoteJobRow.id).in_(job_ids), heartbeat_at=now)

    async def progress(self, job_id: UUID, counts: SubOperations, failures: Sequence[Failure], now: datetime) -> None:
        await self._unfinished(job_id, heartbeat_at=now, **_counts(counts, failures))

    async def finish(self, job_id: UUID, outcome: Outcome, now: datetime) -> None:
        await self._unfinished(job_id, status=outcome.status.value, finished_at=now, heartbeat_at=now,
                               final_status=outcome.final_status, detail=_clip(outcome.detail),
                               **_counts(outcome.counts, outcome.failures))

    async def interrupt_stale(self, before: datetime, detail: str, now: datetime) -> int:
        """Mark interrupted every unfinished job whose heartbeat is older than ``before``: its process is gone."""
        return await self._update(col(RemoteJobRow.status).in_([JobStatusValues.QUEUED, JobStatusValues.RUNNING]),
                                  col(RemoteJobRow.heartbeat_at) < before,
                                  status=JobStatusValues.INTERRUPTED.value, finished_at=now, detail=detail)

    async def _unfinished(self, job_id: UUID, **values: Any) -> bool:
        return bool(await self._update(
            col(RemoteJobRow.id) == job_id,
            col(RemoteJobRow.status).in_([JobStatusValues.QUEUED, JobStatusValues.RUNNING]), **values))

    async def _update(self, *where: Any, **values: Any) -> int:
        async with self.db.session() as session:
            result = await session.execute(update(RemoteJobRow).where(*where).values(**values))
            await session.commit()
        return int(result.rowcount)  # type: ignore[attr-defined]


def _counts(counts: SubOperations, failures: Sequence[Failure]) -> dict[str, Any]:
    return {"completed": counts.completed, "failed": counts.failed, "warning": counts.warning,
            "remaining": counts.remaining,
            "failures": [{"sop_instance_uid": f.sop_instance_uid, "reason": f.reason}
                         for f in failures[:MAX_FAILURES_KEPT]]}


def _clip(text: str | None) -> str | None:
    return None if text is None else text[:1024]


def _remote(row: RemotePacsRow) -> RemotePacs:
    return RemotePacs(id=row.id, organization_id=row.organization_id, ae_title=row.ae_title, host=row.host,
                      port=row.port, description=row.description, created_at=_utc(row.created_at),
                      calling_ae_title=row.calling_ae_title, modality_id=row.modality_id)


def _job(row: RemoteJobRow) -> Job:
    return Job(id=row.id, organization_id=row.organization_id, remote_pacs_id=row.remote_pacs_id,
               remote_ae_title=row.remote_ae_title, operation=JobOperationValues(row.operation),
               status=JobStatusValues(row.status), study_instance_uid=row.study_instance_uid,
               series_instance_uid=row.series_instance_uid, created_at=_utc(row.created_at),
               requested_by=row.requested_by, started_at=_utc(row.started_at), finished_at=_utc(row.finished_at),
               counts=SubOperations(row.completed, row.failed, row.warning, row.remaining),
               failures=tuple(Failure(f["sop_instance_uid"], f["reason"]) for f in row.failures),
               final_status=row.final_status, detail=row.detail)


def _utc(moment: Any) -> Any:
    """SQLite hands back naive datetimes; everything stored here is UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# -- the SCU -------------------------------------------------------------------------------------------------------

class RemoteUnavailable(Exception):
    """No association (connection refused or timed out, A-ASSOCIATE-RJ), or it was lost midway."""


class RemoteRefused(Exception):
    """The remote answered a C-FIND with a failure status (PS3.4 Table C.4-1)."""

    def __init__(self, status: int, comment: str = "") -> None:
        super().__init__(f"0x{status:04X} {status_meaning(status)}" + (f": {comment}" if comment else ""))
        self.status = status


@dataclass(frozen=True)
class Peer:
    host: str
    port: int
    ae_title: str  # the Called AE Title
    calling_ae_title: str


class Progress:
    """What a running DIMSE call shares with the event loop: its association, its counts, its failures.

    Written from the association's threads and read from the loop, under one lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = SubOperations()
        self._failures: list[Failure] = []
        self._assoc: Any = None
        self.cancelled = threading.Event()

    def attach(self, assoc: Any) -> None:
        with self._lock:
            self._assoc = assoc
        if self.cancelled.is_set():
            assoc.abort()

    def cancel(self) -> None:
        """Abort the association, if any, without waiting (this runs on the event loop); the call in the
        worker thread then ends soon."""
        self.cancelled.set()
        with self._lock:
            assoc = self._assoc
        if assoc is not None and assoc.is_alive():
            assoc.abort(block=False)

    def reported(self, completed: int | None, failed: int | None, warning: int | None,
                 remaining: int | None) -> None:
        """Counts as the remote reports them in a C-MOVE or C-GET response; absent ones are kept."""
        with self._lock:
            c = self._counts
            self._counts = SubOperations(c.completed if completed is None else completed,
                                         c.failed if failed is None else failed,
                                         c.warning if warning is None else warning,
                                         c.remaining if remaining is None else remaining)

    def counted(self, *, completed: int = 0, failed: int = 0, warning: int = 0) -> None:
        with self._lock:
            c = self._counts
            remaining = None if c.remaining is None else max(0, c.remaining - completed - failed - warning)
            self._counts = SubOperations(c.completed + completed, c.failed + failed, c.warning + warning, remaining)

    def expect(self, remaining: int) -> None:
        with self._lock:
            self._counts = replace(self._counts, remaining=remaining)

    def fail(self, sop_instance_uid: str, reason: str) -> None:
        with self._lock:
            if len(self._failures) < MAX_FAILURES_KEPT:
                self._failures.append(Failure(sop_instance_uid, reason))

    def snapshot(self) -> tuple[SubOperations, tuple[Failure, ...]]:
        with self._lock:
            return self._counts, tuple(self._failures)


@dataclass(frozen=True)
class FindAnswer:
    matches: list[Dataset]
    #: Set when the limit was reached and the rest cancelled (C-CANCEL, PS3.7 §9.3.2.3).
    truncated: bool


@dataclass(frozen=True)
class RetrieveAnswer:
    """The final response of a C-MOVE or C-GET; ``final_status`` None when none came (association lost)."""

    final_status: int | None
    comment: str = ""
    failed_sop_instance_uids: tuple[str, ...] = ()


StoreHandler = Callable[[Any], int]
Reader = Callable[[RetrievableInstance], bytes]


class DimseClient:
    """Blocking DIMSE SCU operations against one :class:`Peer` each (pynetdicom)."""

    def __init__(self, *, connection_timeout: float, acse_timeout: float, dimse_timeout: float,
                 network_timeout: float, maximum_pdu_size: int) -> None:
        self.connection_timeout, self.acse_timeout = connection_timeout, acse_timeout
        self.dimse_timeout, self.network_timeout = dimse_timeout, network_timeout
        self.maximum_pdu_size = maximum_pdu_size

    def within(self, seconds: float) -> DimseClient:
        """The same client with no timeout longer than ``seconds``, for calls under a deadline."""
        return DimseClient(connection_timeout=min(self.connection_timeout, seconds),
                           acse_timeout=min(self.acse_timeout, seconds),
                           dimse_timeout=min(self.dimse_timeout, seconds),
                           network_timeout=min(self.network_timeout, seconds), maximum_pdu_size=self.maximum_pdu_size)

    def echo(self, peer: Peer, progress: Progress) -> int:
        """C-ECHO (PS3.7 §9.1.5): the status the remote answered."""
        assoc = self._associate(peer, [build_context(Verification)], progress)
        try:
            status = assoc.send_c_echo()
        finally:
            _release(assoc)
        if "Status" not in status:
            raise RemoteUnavailable("the remote PACS did not answer the C-ECHO (association aborted or timed out)")
        return int(status.Status)

    def find(self, peer: Peer, identifier: Dataset, limit: int, progress: Progress) -> FindAnswer:
        """C-FIND, Study Root: the identifiers of the Pending responses, at most ``limit`` of them.

        Raises
        ------
        RemoteUnavailable
            No association, or it was lost before the final response.
        RemoteRefused
            A failure status.
        """
        assoc = self._associate(peer, [build_context(FIND)], progress)
        try:
            return self._find(assoc, identifier, limit)
        finally:
            _release(assoc)

    def sop_classes(self, peer: Peer, study_instance_uid: str, series_instance_uid: str | None,
                    progress: Progress) -> list[str]:
        """The SOP classes of a study (SOP Classes in Study, else image by image) or of one series."""
        assoc = self._associate(peer, [build_context(FIND)], progress)
        try:
            if series_instance_uid is None:
                study = _query("STUDY", StudyInstanceUID=study_instance_uid, SOPClassesInStudy="")
                found = {str(uid) for match in self._find(assoc, study, 10).matches
                         for uid in _values(match.get("SOPClassesInStudy"))}
                if found:
                    return sorted(found)
                series = _query("SERIES", StudyInstanceUID=study_instance_uid, SeriesInstanceUID="")
                series_uids = [str(m.SeriesInstanceUID) for m in self._find(assoc, series, 10_000).matches
                               if m.get("SeriesInstanceUID")]
            else:
                series_uids = [series_instance_uid]
            classes: set[str] = set()
            for uid in series_uids:
                images = _query("IMAGE", StudyInstanceUID=study_instance_uid, SeriesInstanceUID=uid, SOPClassUID="")
                classes |= {str(m.SOPClassUID) for m in self._find(assoc, images, 100_000).matches
                            if m.get("SOPClassUID")}
            return sorted(classes)
        finally:
            _release(assoc)

    def move(self, peer: Peer, identifier: Dataset, move_destination: str, progress: Progress) -> RetrieveAnswer:
        """C-MOVE, Study Root, to ``move_destination`` (PS3.4 §C.4.2): the remote stores to it."""
        assoc = self._associate(peer, [build_context(MOVE)], progress)
        try:
            return _retrieval(assoc.send_c_move(identifier, move_destination, MOVE), progress)
        finally:
            _release(assoc)

    def get(self, peer: Peer, identifier: Dataset, sop_classes: Sequence[str], on_store: StoreHandler,
            progress: Progress) -> RetrieveAnswer:
        """C-GET, Study Root (PS3.4 §C.4.3): the remote stores back on this association to ``on_store``.

        The storage contexts name the SOP classes given, with the SCP role (PS3.7 Annex D.3.3.4).
        """
        contexts = get_contexts(sop_classes)
        roles = list({context.abstract_syntax: build_role(context.abstract_syntax, scp_role=True)
                      for context in contexts}.values())
        assoc = self._associate(peer, [build_context(GET), *contexts], progress, ext_neg=roles,
                                evt_handlers=[(evt.EVT_C_STORE, on_store)])
        try:
            return _retrieval(assoc.send_c_get(identifier, GET), progress)
        finally:
            _release(assoc)

    def store(self, peer: Peer, instances: Sequence[RetrievableInstance], read: Reader, progress: Progress) -> None:
        """C-STORE each instance (PS3.4 Annex B), as stored when the remote accepts its transfer syntax,
        else converted or decompressed to an uncompressed one; each outcome goes to ``progress``."""
        progress.expect(len(instances))
        batches = store_batches(instances)
        for number, batch in enumerate(batches):
            if progress.cancelled.is_set():
                return
            try:
                assoc = self._associate(peer, store_contexts(batch), progress)
            except RemoteUnavailable as error:
                for instance in (i for rest in batches[number:] for i in rest):
                    _failed(progress, instance.sop_instance_uid, str(error))
                return
            try:
                for instance in batch:
                    if progress.cancelled.is_set() or not assoc.is_established:
                        reason = "cancelled" if progress.cancelled.is_set() else "the association was lost"
                        _failed(progress, instance.sop_instance_uid, reason)
                        continue
                    self._store_one(assoc, instance, read, progress)
            finally:
                _release(assoc)

    def _store_one(self, assoc: Any, instance: RetrievableInstance, read: Reader, progress: Progress) -> None:
        uid = instance.sop_instance_uid
        try:
            dataset = dcmread(BytesIO(read(instance)))
        except Exception:
            log.exception("the stored file could not be read", extra={"sop_instance_uid": uid})
            _failed(progress, uid, "the stored file could not be read")
            return
        try:
            dataset = sendable(dataset, assoc.accepted_contexts)
            status = assoc.send_c_store(dataset)
        except Exception as error:
            _failed(progress, uid, str(error)[:300] or type(error).__name__)
            return
        if "Status" not in status:
            _failed(progress, uid, "no C-STORE response (association aborted or timed out)")
            return
        code = int(status.Status)
        if code == 0x0000:
            progress.counted(completed=1)
        elif code in (0x0001, 0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF:
            progress.counted(warning=1)
        else:
            comment = str(status.get("ErrorComment", "") or "")
            _failed(progress, uid, f"0x{code:04X} {status_meaning(code)}" + (f": {comment}" if comment else ""))

    def _find(self, assoc: Any, identifier: Dataset, limit: int) -> FindAnswer:
        matches: list[Dataset] = []
        cancelled, extra = False, 0
        for status, found in assoc.send_c_find(identifier, FIND):
            if "Status" not in status:
                raise RemoteUnavailable("the association was aborted or timed out before the C-FIND ended")
            code = int(status.Status)
            if code in _PENDING:
                if len(matches) < limit:
                    matches.append(found if found is not None else Dataset())
                else:
                    extra += 1
                    if extra > _DRAIN_AFTER_CANCEL:
                        assoc.abort()
                        return FindAnswer(matches, True)
                if len(matches) == limit and not cancelled:
                    assoc.send_c_cancel(1, query_model=FIND)
                    cancelled = True
                continue
            if code == 0xFE00:
                return FindAnswer(matches, True)
            if code != 0x0000:
                raise RemoteRefused(code, str(status.get("ErrorComment", "") or ""))
            return FindAnswer(matches, extra > 0)
        raise RemoteUnavailable("the remote PACS sent no final C-FIND response")

    def _associate(self, peer: Peer, contexts: list[PresentationContext], progress: Progress,
                   **kwargs: Any) -> Any:
        ae = AE(ae_title=peer.calling_ae_title)
        ae.connection_timeout = self.connection_timeout
        ae.acse_timeout = self.acse_timeout
        ae.dimse_timeout = self.dimse_timeout
        ae.network_timeout = self.network_timeout
        ae.maximum_pdu_size = self.maximum_pdu_size
        if progress.cancelled.is_set():
            raise RemoteUnavailable("cancelled")
        assoc = ae.associate(peer.host, peer.port, contexts, ae_title=peer.ae_title,
                             max_pdu=self.maximum_pdu_size, **kwargs)
        if assoc.is_established:
            progress.attach(assoc)
            return assoc
        where = f"{peer.ae_title} at {peer.host}:{peer.port}"
        if assoc.is_rejected:
            answer = assoc.acceptor.primitive
            raise RemoteUnavailable(f"{where} rejected the association: "
                                    f"{_rejection(answer.result_source, answer.diagnostic, peer)}")
        raise RemoteUnavailable(f"could not associate with {where}: connection refused or unreachable, "
                                f"or no answer in time, or aborted")


def get_contexts(sop_classes: Sequence[str]) -> list[PresentationContext]:
    """Storage contexts for a C-GET: per SOP class the uncompressed syntaxes and, when there is room for
    them all, one context per compressed syntax of :data:`COMPRESSED`; without SOP classes (the remote
    would not say) the 120 storage SOP classes pynetdicom preselects to fit the 128 contexts a requestor may
    propose (``StoragePresentationContexts``), uncompressed."""
    room = MAX_CONTEXTS - 1  # the C-GET's own context
    if not sop_classes:
        return [build_context(c.abstract_syntax, list(UNCOMPRESSED)) for c in StoragePresentationContexts[:room]]
    contexts = [build_context(uid, list(UNCOMPRESSED)) for uid in sop_classes[:room]]
    if len(sop_classes) * (1 + len(COMPRESSED)) <= room:
        contexts += [build_context(uid, syntax) for uid in sop_classes for syntax in COMPRESSED]
    return contexts


def store_batches(instances: Sequence[RetrievableInstance]) -> list[list[RetrievableInstance]]:
    """The instances grouped into associations whose contexts fit in :data:`MAX_CONTEXTS`."""
    by_class: dict[str, list[RetrievableInstance]] = {}
    for instance in instances:
        by_class.setdefault(instance.sop_class_uid, []).append(instance)
    batches: list[list[RetrievableInstance]] = []
    batch: list[RetrievableInstance] = []
    for group in by_class.values():
        if batch and len(store_contexts([*batch, *group])) > MAX_CONTEXTS:
            batches.append(batch)
            batch = []
        batch += group
    return [*batches, batch] if batch else batches


def store_contexts(instances: Sequence[RetrievableInstance]) -> list[PresentationContext]:
    """Per SOP class the uncompressed syntaxes, and one context per other transfer syntax stored."""
    wanted: dict[tuple[str, tuple[str, ...]], None] = {}
    for instance in instances:
        wanted[(instance.sop_class_uid, UNCOMPRESSED)] = None
        if instance.transfer_syntax_uid not in UNCOMPRESSED:
            wanted[(instance.sop_class_uid, (instance.transfer_syntax_uid,))] = None
    return [build_context(sop_class, list(syntaxes)) for sop_class, syntaxes in wanted]


def sendable(dataset: Dataset, accepted: Sequence[PresentationContext]) -> Dataset:
    """The data set as it can go over the accepted contexts: as stored when its transfer syntax was
    accepted (pynetdicom converts between the little endian uncompressed ones); compressed pixel data
    decompressed to Explicit VR Little Endian when only an uncompressed syntax was.

    Raises
    ------
    ValueError
        When no accepted context can carry it.
    """
    sop_class = str(dataset.SOPClassUID)
    stored = UID(dataset.file_meta.TransferSyntaxUID)
    syntaxes = {UID(context.transfer_syntax[0]) for context in accepted if context.abstract_syntax == sop_class}
    if not syntaxes:
        raise ValueError(f"the remote PACS accepted no presentation context for SOP class {sop_class}")
    if stored in syntaxes:
        return dataset
    if not stored.is_compressed and stored.is_little_endian and any(
            not s.is_compressed and s.is_little_endian for s in syntaxes):
        return dataset
    if stored.is_compressed and syntaxes & {ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                                             DeflatedExplicitVRLittleEndian}:
        # to Explicit VR Little Endian, the same SOP instance: the remote does not take it as stored
        dataset.decompress(generate_instance_uid=False)
        return dataset
    raise ValueError(f"the remote PACS accepts {sop_class} in none of the transfer syntaxes it can be sent in "
                     f"(stored as {stored.name})")


def _retrieval(responses: Iterator[tuple[Dataset, Dataset | None]], progress: Progress) -> RetrieveAnswer:
    for status, identifier in responses:
        if "Status" not in status:
            return RetrieveAnswer(None, "the association was aborted or timed out before the final response")
        progress.reported(*(_count(status, f"Number{kind}Suboperations")
                            for kind in ("OfCompleted", "OfFailed", "OfWarning", "OfRemaining")))
        code = int(status.Status)
        if code in _PENDING:
            continue
        failed = tuple(str(uid) for uid in _values(identifier.get("FailedSOPInstanceUIDList")
                                                  if identifier is not None else None))
        return RetrieveAnswer(code, str(status.get("ErrorComment", "") or ""), failed)
    return RetrieveAnswer(None, "the remote PACS sent no final response")


def _count(status: Dataset, keyword: str) -> int | None:
    value = status.get(keyword)
    return None if value is None else int(value)


def _values(value: Any) -> list[Any]:
    """The values of a possibly multi-valued element's value (pydicom gives one value bare)."""
    if value is None or value == "":
        return []
    return [value] if isinstance(value, str) else list(value)


def _query(level: str, **keys: str) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    return identifier


def _failed(progress: Progress, sop_instance_uid: str, reason: str) -> None:
    progress.counted(failed=1)
    progress.fail(sop_instance_uid, reason)


def _release(assoc: Any) -> None:
    try:
        if assoc.is_established:
            assoc.release()
    except Exception:
        log.exception("could not release the association; aborting it")
        assoc.abort()


def _rejection(source: int, diagnostic: int, peer: Peer) -> str:
    """A-ASSOCIATE-RJ Source and Reason/Diag. (PS3.8 §9.3.4) as words."""
    if source == 0x01 and diagnostic == 0x03:
        return f"calling AE title {peer.calling_ae_title} not recognized (register Telerad on the remote PACS)"
    if source == 0x01 and diagnostic == 0x07:
        return f"called AE title {peer.ae_title} not recognized"
    if source == 0x03:
        return "temporary congestion or a local limit exceeded"
    return f"source {source}, reason {diagnostic}"
