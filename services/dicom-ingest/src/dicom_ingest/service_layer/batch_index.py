"""Index received instances in batches: one transaction for every instance waiting, not one each.

C-STORE handlers (pynetdicom threads), STOW-RS and C-GET retrievals call the writer as they would
call :func:`~dicom_ingest.service_layer.handlers.index_instance`, and each waits for its own outcome.
A single task on the event loop takes everything submitted meanwhile (up to ``max_batch``) and
indexes it with :func:`~dicom_ingest.service_layer.handlers.index_instances` in one transaction, so
under load the cost of a commit is shared by many instances, and an idle writer adds no delay: the
first instance after a pause is written at once. Each caller is answered only once the transaction
has committed, so a C-STORE response still means the row is durable.

A batch that fails is retried (two first instances of one study racing from two processes, or under the
``overwrite`` duplicate policy an instance another process inserted meanwhile, which the retry replaces),
then written one instance per transaction, so one instance the database refuses fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Protocol

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from dicom_ingest.domain.model import DuplicatePolicy, IndexOutcomeValues, StoreInstance, priority_of
from dicom_ingest.service_layer.handlers import ConcurrentlyIndexed, index_instances
from radcommon.db import Database

log = logging.getLogger(__name__)

Batch = list[tuple[StoreInstance, asyncio.Future[str]]]


class BatchWriter(Protocol):
    """Writes one batch in one transaction and returns an outcome per command."""

    async def __call__(self, commands: Sequence[StoreInstance]) -> list[str]: ...

    async def close(self) -> None: ...


class DatabaseWriter:
    """:func:`index_instances` in a transaction on a connection kept between batches (no pool checkout,
    no pre-ping per batch); a connection that failed is closed and the next batch opens another."""

    def __init__(self, db: Database, duplicate_policy: DuplicatePolicy = "keep_first") -> None:
        self.db = db
        self.duplicate_policy = duplicate_policy
        self._conn: AsyncConnection | None = None
        self._pg: asyncpg.Connection | None = None

    async def __call__(self, commands: Sequence[StoreInstance]) -> list[str]:
        if self.db.is_postgres and self.duplicate_policy == "keep_first":
            return await self._in_one_round_trip(commands)
        if self._conn is None:
            self._conn = await self.db.engine.connect()
        try:
            async with self._conn.begin():
                return await index_instances(commands, self._conn, self.duplicate_policy)
        except ConcurrentlyIndexed:
            raise  # rolled back; the connection is sound
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
        pg, self._pg = self._pg, None
        if pg is not None:
            with contextlib.suppress(Exception):
                await pg.close(timeout=5)

    async def _in_one_round_trip(self, commands: Sequence[StoreInstance]) -> list[str]:
        """keep_first on PostgreSQL: the server function of migration 0007, called in autocommit (its call is the
        whole transaction), on an asyncpg connection of the writer's own."""
        if self._pg is None:
            self._pg = await asyncpg.connect(self.db.libpq_dsn)
        try:
            stored = {row[0] for row in await self._pg.fetch(INDEX_FUNCTION_CALL, index_batch_json(commands))}
        except asyncpg.exceptions.TransactionRollbackError as error:  # a deadlock with another process: again
            raise ConcurrentlyIndexed(str(error)) from error
        except BaseException:
            await self.close()
            raise
        return [IndexOutcomeValues.STORED if number in stored else IndexOutcomeValues.DUPLICATE
                for number in range(len(commands))]


INDEX_FUNCTION_CALL = "SELECT dicom_index_keep_first($1::jsonb)"


def index_batch_json(commands: Sequence[StoreInstance]) -> str:
    """The batch as the ``dicom_index_row`` records ``dicom_index_keep_first`` reads (migration 0007)."""
    return json.dumps([{
        "ord": number, "organization_id": str(c.organization_id), "sop_instance_uid": a.sop_instance_uid,
        "sop_class_uid": a.sop_class_uid, "transfer_syntax_uid": c.transfer_syntax_uid,
        "instance_number": a.instance_number, "number_of_frames": a.number_of_frames, "storage_key": c.storage_key,
        "size_bytes": c.size_bytes, "study_instance_uid": a.study_instance_uid,
        "series_instance_uid": a.series_instance_uid, "patient_id": a.patient_id,
        "issuer_of_patient_id": a.issuer_of_patient_id, "patient_name": a.patient_name,
        "patient_birth_date": a.patient_birth_date and a.patient_birth_date.isoformat(), "patient_sex": a.patient_sex,
        "accession_number": a.accession_number, "study_id": a.study_id,
        "study_date": a.study_date and a.study_date.isoformat(), "study_time": a.study_time,
        "study_description": a.study_description, "referring_physician_name": a.referring_physician_name,
        "priority": priority_of(a).value, "calling_ae_title": c.calling_ae_title, "modality": a.modality,
        "series_number": a.series_number, "series_description": a.series_description,
        "body_part_examined": a.body_part_examined} for number, c in enumerate(commands) for a in [c.attributes]])


class BatchIndexer:
    """An ``index(command) -> outcome`` callable that writes what is waiting in one transaction."""

    def __init__(self, write: BatchWriter, *, max_batch: int = 64, attempts: int = 3) -> None:
        self.write = write
        self.max_batch = max_batch
        self.attempts = attempts
        self._queue: asyncio.Queue[tuple[StoreInstance, asyncio.Future[str]]] | None = None
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, command: StoreInstance) -> str:
        if self._queue is None or self._task is None or self._task.done():
            self._queue = self._queue or asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run(self._queue), name="batch-indexer")
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((command, future))
        return await future

    async def close(self) -> None:
        """Stop the writer; whatever is still queued fails (its C-STORE answers A700, its file is discarded)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._queue is not None and not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(RuntimeError("the index writer stopped"))
        await self.write.close()

    async def _run(self, queue: asyncio.Queue[tuple[StoreInstance, asyncio.Future[str]]]) -> None:
        while True:
            batch: Batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(RuntimeError("the index writer stopped"))
                raise

    async def _write(self, batch: Batch) -> None:
        batch = [(command, future) for command, future in batch if not future.cancelled()]
        if not batch:
            return
        for attempt in range(self.attempts):
            try:
                outcomes = await self.write([command for command, _ in batch])
            except (DBAPIError, ConcurrentlyIndexed) as error:  # lost a race against another process: try again
                if attempt + 1 < self.attempts:
                    continue
                failure: Exception = error
            except Exception as error:
                failure = error
            else:
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if not future.done():
                        future.set_result(outcome)
                return
            break
        if len(batch) > 1:
            log.warning("index batch of %d failed (%s); writing its instances one by one", len(batch),
                        type(failure).__name__)
            for one in batch:
                await self._write([one])
            return
        for _, future in batch:
            if not future.done():
                future.set_exception(failure)
