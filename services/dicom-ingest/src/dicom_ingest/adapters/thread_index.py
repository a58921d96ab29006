"""Index a received instance from the thread that received it: the C-STORE path on PostgreSQL.

:class:`~dicom_ingest.service_layer.batch_index.BatchIndexer` writes from the event loop: a C-STORE received
in pynetdicom's DUL thread is handed to the loop, which calls the index function through asyncpg and hands
the outcome back. On one association each hand-off wakes a sleeping thread, and together they cost about
0.4 ms of wall time and 0.5 ms of CPU per instance (docs/benchmarks.md). Here the DUL thread calls
``dicom_index_keep_first`` (migrations 0007-0009) itself, with a synchronous driver (psycopg 3), on a
connection of a small pool, in autocommit: the call is the whole transaction, so the C-STORE response still
follows the commit.

Only for the keep_first policy on PostgreSQL; STOW-RS, C-GET retrievals and the overwrite policy keep
the batch writer. Concurrent associations each use a connection of their own, and PostgreSQL's group
commit shares WAL flushes among them instead of the batch writer's transactions. A call the server
cancels (``statement_timeout``, the index timeout) or any other failure raises, and the instance is
refused as before; a deadlock with another writer is tried again, and so is a call on a kept connection the
server has dropped meanwhile (after a PostgreSQL restart), on a new one.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from typing import LiteralString

import psycopg

from dicom_ingest.domain.model import IndexOutcomeValues, StoreInstance
from dicom_ingest.service_layer.batch_index import index_batch_json
from dicom_ingest.service_layer.handlers import ConcurrentlyIndexed

log = logging.getLogger(__name__)

INDEX_FUNCTION_CALL: LiteralString = "SELECT dicom_index_keep_first(%s::jsonb)"
REFERENCED: LiteralString = "SELECT 1 FROM instances WHERE storage_key = %s LIMIT 1"


class ThreadIndexer:
    """``index(command) -> outcome``, callable from any thread; connections are opened as needed and up to
    ``idle`` of them are kept between calls."""

    def __init__(self, dsn: str, *, timeout_seconds: float, idle: int = 8, attempts: int = 3) -> None:
        self.dsn = dsn
        self.timeout_seconds = timeout_seconds
        self.attempts = attempts
        self._idle: queue.LifoQueue[psycopg.Connection[tuple[int]]] = queue.LifoQueue(maxsize=idle)
        self._closed = threading.Event()

    def __call__(self, command: StoreInstance) -> str:
        return self.index_batch([command])[0]

    def index_batch(self, commands: Sequence[StoreInstance]) -> list[str]:
        """Index ``commands`` in one transaction; each one's outcome, STORED or DUPLICATE."""
        stored = set(self._call(INDEX_FUNCTION_CALL, index_batch_json(commands)))
        return [IndexOutcomeValues.STORED if number in stored else IndexOutcomeValues.DUPLICATE
                for number in range(len(commands))]

    def references(self, storage_key: str) -> bool:
        """Whether an index row points at the file stored under ``storage_key``."""
        return bool(self._call(REFERENCED, storage_key))

    def _call(self, statement: LiteralString, argument: str) -> list[int]:
        """The first column of the rows ``statement`` returns for ``argument``."""
        attempt = 0
        while True:
            conn, kept = self._take()
            try:
                rows = conn.execute(statement, (argument,), prepare=True).fetchall()
            except psycopg.Error as error:
                if kept and conn.broken:
                    # a kept connection the server dropped meanwhile (a restart, a failover): another one. If the
                    # call had committed, the next one finds the instance held, which is answered as stored too.
                    conn.close()
                    continue
                if error.sqlstate is None or not error.sqlstate.startswith("40"):  # not a transaction rollback
                    conn.close()
                    raise
                self._give_back(conn)  # a deadlock with another writer (class 40): again
                attempt += 1
                if attempt < self.attempts:
                    continue
                raise ConcurrentlyIndexed(str(error)) from error
            except BaseException:
                conn.close()
                raise
            self._give_back(conn)
            return [row[0] for row in rows]

    def close(self) -> None:
        """Close the idle connections; one in use is closed when its call returns."""
        self._closed.set()
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    def _take(self) -> tuple[psycopg.Connection[tuple[int]], bool]:
        """A connection, and whether it was kept from an earlier call (rather than opened now)."""
        if self._closed.is_set():
            raise RuntimeError("the index writer is closed")
        try:
            return self._idle.get_nowait(), True
        except queue.Empty:
            timeout_ms = max(1, int(self.timeout_seconds * 1000))
            return psycopg.connect(self.dsn, autocommit=True, connect_timeout=max(1, int(self.timeout_seconds)),
                                   options=f"-c statement_timeout={timeout_ms}"), False

    def _give_back(self, conn: psycopg.Connection[tuple[int]]) -> None:
        if self._closed.is_set() or conn.closed:
            conn.close()
            return
        try:
            self._idle.put_nowait(conn)
        except queue.Full:
            conn.close()
