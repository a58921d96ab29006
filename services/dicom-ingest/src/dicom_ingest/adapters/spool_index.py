"""Acknowledge a C-STORE once its file is on disk, and index it right behind, in batches.

With the index in the C-STORE's path, a modality sending on one association waits, for every instance,
for a transaction of its own: PostgreSQL's planning and executor start-up for each statement of the index
function and a WAL flush, about 2 ms of server CPU and as much wall time per small instance, where the
file write and its fsync take about 1 ms. Here (``DICOM_INGEST_ACKNOWLEDGE_WHEN=written``, the default on
PostgreSQL with keep_first):

* the received instance is checked as before (a data set that does not parse, or whose UIDs contradict
  the request, is still refused), then written to the *spool* (``<storage>/spool``), fsynced, and the
  C-STORE is answered Success: from then on it is held as durably as an indexed one;
* a thread indexes what waits in one transaction per batch (up to ``max_batch`` instances, gathered for
  up to ``linger_seconds`` after the first), through :class:`~dicom_ingest.adapters.thread_index.ThreadIndexer`:
  it files each spooled file under its content key (a hard link, fsynced directories) *before* the
  transaction, so an index row never points at a missing file, then removes the spooled name;
* an A-RELEASE-RQ is answered once everything the association sent is indexed, as are C-FIND, C-MOVE and
  C-GET on it, so a sender that has released (storescu has exited) or that queries on the same
  association sees all it sent, as with the index in the path;
* a process that dies with instances in the spool leaves them there, and the next one to start indexes
  them (:meth:`SpoolIndexer.recover`): nothing acknowledged is lost, nothing is indexed twice (a second
  attempt finds the instance held, which is the duplicate rule);
* a database that cannot be reached, a deadlock, a statement timeout or a full disk is tried again, with
  back-off, until it works; the instances stay in the spool meanwhile. An instance the index refuses for
  its values (SQLSTATE classes 22 and 23, or any other error), which with the index in the path would have
  been answered 0xA700, is found by indexing the batch's instances one by one, set aside in
  ``spool/failed`` and logged, for an operator.

What the sender no longer learns is only that last case: with keep_first a duplicate is answered Success
either way, and the keep_first index function never reports a conflict.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import psycopg

from dicom_ingest.adapters.storage import FileStorage
from dicom_ingest.adapters.thread_index import ThreadIndexer
from dicom_ingest.dicom.attributes import InstanceAttributes, read_instance
from dicom_ingest.dicom.part10 import read_file_meta
from dicom_ingest.domain.model import IndexOutcomeValues, StoreInstance
from dicom_ingest.service_layer.handlers import ConcurrentlyIndexed

log = logging.getLogger(__name__)

#: SQLSTATE classes of a refusal for the values themselves (data exception, integrity constraint violation):
#: trying again does not help, so the instance is set aside; any other failure is tried again.
REFUSED_FOR_ITS_VALUES = ("22", "23")


#: Put in the queue by ``settle``: write the batch being gathered now, without waiting out its linger.
HURRY = None


@dataclass(frozen=True)
class Spooled:
    """An instance acknowledged and waiting in the spool; ``owner`` is the association that sent it."""

    command: StoreInstance
    path: str
    owner: object | None


def spool_label(organization_id: UUID, calling_ae_title: str) -> str:
    """What a spooled file's name holds besides its key: what the file itself does not say."""
    return f"{organization_id.hex}.{calling_ae_title.encode('ascii', 'replace').hex()}"


@dataclass(frozen=True)
class SpoolName:
    """What a spooled file's name says (:meth:`FileStorage.spool` with :func:`spool_label`)."""

    storage_key: str
    organization_id: UUID
    calling_ae_title: str

    @classmethod
    def parse(cls, path: str) -> SpoolName:
        """ValueError if ``path``'s name is not one the spool gives."""
        key, organization, calling_ae = os.path.basename(path).split(".")[:3]
        return cls(key, UUID(hex=organization), bytes.fromhex(calling_ae).decode("ascii"))


def read_spooled(path: str) -> StoreInstance:
    """The index command of a file left in the spool, from its name and its content."""
    name = SpoolName.parse(path)
    with open(path, "rb") as file:
        data = file.read()
    meta = read_file_meta(data)
    attributes: InstanceAttributes = read_instance(data[meta.dataset_offset:], meta.transfer_syntax_uid)
    return StoreInstance(name.organization_id, attributes, meta.transfer_syntax_uid, name.storage_key, len(data),
                         name.calling_ae_title)


class SpoolIndexer:
    """``submit`` writes to the spool and returns; a thread indexes; ``settle(owner)`` waits for an owner's."""

    def __init__(self, storage: FileStorage, index: ThreadIndexer, *, linger_seconds: float = 0.005,
                 max_batch: int = 64, retry_seconds: tuple[float, float] = (0.25, 10.0)) -> None:
        self.storage = storage
        self.index = index
        self.linger_seconds = linger_seconds
        self.max_batch = max_batch
        self.retry_seconds = retry_seconds
        self._queue: queue.Queue[Spooled | None] = queue.Queue()  # None: HURRY
        self._pending: Counter[object] = Counter()  # owner -> instances submitted and not yet indexed
        self._settled = threading.Condition()
        self._stopping = threading.Event()
        self._abandon = threading.Event()
        self._thread: threading.Thread | None = None
        #: Instances indexed, transactions that indexed them, instances set aside, since the start (tests, logs).
        self.indexed = self.batches = self.set_aside = 0

    # -- the C-STORE's side ---------------------------------------------------------------------------------

    def submit(self, organization_id: UUID, attributes: InstanceAttributes, transfer_syntax_uid: str,
               data: bytes, calling_ae_title: str, owner: object) -> None:
        """Write the file (``data``, a PS3.10 file) to the spool, durably, and queue it for the index.
        Returns once the file is on disk: the C-STORE may then be answered Success. Raises if it is not."""
        if self._stopping.is_set():
            raise RuntimeError("the spool indexer is stopping")
        key, path = self.storage.spool(data, spool_label(organization_id, calling_ae_title))
        command = StoreInstance(organization_id, attributes, transfer_syntax_uid, key, len(data), calling_ae_title)
        with self._settled:
            self._pending[owner] += 1
        self._queue.put(Spooled(command, path, owner))

    def settle(self, owner: object, timeout: float) -> bool:
        """Wait until all ``owner`` submitted is indexed (or set aside); False if ``timeout`` passed first.
        The batch being gathered is written at once rather than after its linger: someone is waiting."""
        with self._settled:
            if self._pending[owner] == 0:
                return True
        self._queue.put(HURRY)
        with self._settled:
            return self._settled.wait_for(lambda: self._pending[owner] == 0, timeout)

    @property
    def waiting(self) -> int:
        """Instances acknowledged and not yet indexed."""
        with self._settled:
            return sum(self._pending.values())

    # -- life cycle -----------------------------------------------------------------------------------------

    def start(self) -> int:
        """Start the indexing thread, which first takes what an earlier process left in the spool; how many files."""
        left = self.storage.spooled()
        if left:
            log.warning("indexing %d files an earlier process acknowledged and left in the spool", len(left))
            with self._settled:
                self._pending[None] += len(left)
        self._thread = threading.Thread(target=self._run, args=(left,), name="spool-indexer", daemon=True)
        self._thread.start()
        return len(left)

    def _recover(self, left: list[str]) -> None:
        for path in left:
            try:
                self._queue.put(Spooled(read_spooled(path), path, None))
                continue
            except FileNotFoundError:  # indexed meanwhile by the process that spooled it
                pass
            except Exception:
                log.exception("a file left in the spool cannot be read; set aside", extra={"path": path})
                with contextlib.suppress(OSError):  # else it stays, and the next start tries it again
                    self.storage.set_aside(path)
                self.set_aside += 1
            self._done([None])

    def close(self, timeout: float) -> None:
        """Index what is queued, for up to ``timeout`` seconds; what is left stays in the spool for the next start."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("stopping with %d acknowledged instances not yet indexed; they stay in the spool",
                            self.waiting)
                self._abandon.set()
                self._thread.join(1)

    # -- the indexing thread --------------------------------------------------------------------------------

    def _run(self, left: list[str]) -> None:
        self._recover(left)
        while not self._abandon.is_set():
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            if first is HURRY:
                continue
            batch = [first]
            deadline = time.monotonic() + self.linger_seconds
            while len(batch) < self.max_batch:
                try:
                    spooled = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if spooled is HURRY:
                    break
                batch.append(spooled)
            try:
                self._index_until_done(batch)
            finally:
                self._done([spooled.owner for spooled in batch])

    def _done(self, owners: Sequence[object | None]) -> None:
        with self._settled:
            for owner in owners:
                self._pending[owner] -= 1
                if self._pending[owner] <= 0:
                    del self._pending[owner]
            self._settled.notify_all()

    def _index_until_done(self, batch: Sequence[Spooled]) -> None:
        delay = self.retry_seconds[0]
        while not self._abandon.is_set():
            try:
                self._index(batch)
                return
            except (psycopg.Error, ConcurrentlyIndexed, OSError) as error:
                sqlstate = getattr(error, "sqlstate", None) or ""
                if sqlstate[:2] in REFUSED_FOR_ITS_VALUES:
                    return self._refused(batch, error)
                # the database went away, a deadlock, a statement timeout, a full disk...: again, later
                log.warning("indexing %d spooled instances failed (%s: %s); trying again in %.1f s",
                            len(batch), type(error).__name__, str(error).strip()[:200], delay)
            except Exception as error:  # what trying again would not change
                return self._refused(batch, error)
            self._abandon.wait(delay)
            delay = min(delay * 2, self.retry_seconds[1])

    def _refused(self, batch: Sequence[Spooled], error: Exception) -> None:
        if len(batch) > 1:  # one of them, probably: each in a transaction of its own
            for spooled in batch:
                self._index_until_done([spooled])
        else:
            self._set_aside(batch[0], error)

    def _index(self, batch: Sequence[Spooled]) -> None:
        directories = set()
        for spooled in batch:
            directory = self.storage.adopt(spooled.path, spooled.command.storage_key)
            if directory is not None:
                directories.add(directory)
        self.storage.sync(directories)  # the files' names last before the rows pointing at them do
        outcomes = self.index.index_batch([spooled.command for spooled in batch])
        for spooled, outcome in zip(batch, outcomes, strict=True):
            if outcome != IndexOutcomeValues.STORED:
                key = spooled.command.storage_key
                log.info("duplicate SOP Instance UID: the copy held is kept",
                         extra={"sop_instance_uid": spooled.command.attributes.sop_instance_uid[:64],
                                "calling_ae_title": spooled.command.calling_ae_title})
                if not self.index.references(key):
                    self.storage.delete(key)
            self.storage.unspool(spooled.path)
        self.indexed += len(batch)
        self.batches += 1

    def _set_aside(self, spooled: Spooled, error: Exception) -> None:
        key = spooled.command.storage_key
        with contextlib.suppress(Exception):
            if not self.index.references(key):
                self.storage.delete(key)
        where = self.storage.set_aside(spooled.path)
        self.set_aside += 1
        log.error("an acknowledged instance was refused by the index and set aside: %s", str(error).strip()[:300],
                  extra={"sop_instance_uid": spooled.command.attributes.sop_instance_uid[:64],
                         "calling_ae_title": spooled.command.calling_ae_title, "path": where,
                         "error": type(error).__name__, "sqlstate": getattr(error, "sqlstate", None)})
