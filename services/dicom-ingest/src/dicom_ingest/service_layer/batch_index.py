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
import logging
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from dicom_ingest.domain.model import DuplicatePolicy, StoreInstance
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

    async def __call__(self, commands: Sequence[StoreInstance]) -> list[str]:
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
