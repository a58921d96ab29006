"""The in-process transport of embedded mode: durable queues in one SQLite file.

It keeps the RabbitMQ transport's semantics (see :mod:`radcommon.messaging.bus`): messages are
written before ``publish`` returns, a delivery that was not acknowledged when the process stopped
is delivered again at the next start, failures are retried with backoff and then dead-lettered.
One process owns the file at a time. Subscriptions (``subscribe``) live in memory only: a published
message is handed to each matching one once it is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from radcommon.messaging.bus import (
    ATTEMPT_HEADER,
    ERROR_HEADER,
    REDELIVERY_LIMIT,
    SUBSCRIPTION_BACKLOG,
    UNROUTED_QUEUE,
    DeadLetter,
    Handler,
    Message,
    PermanentFailure,
    Resubscribed,
    RetryPolicy,
    topic_matches,
)

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bindings (queue TEXT NOT NULL, pattern TEXT NOT NULL, PRIMARY KEY (queue, pattern));
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    available_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'ready',
    error TEXT NOT NULL DEFAULT '',
    dead_at REAL,
    redeliveries INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, state, available_at, id);
"""


class LocalBus:
    def __init__(self, path: Path, retry: RetryPolicy | None = None, batch: int = 64) -> None:
        self.path = path
        self.retry = retry or RetryPolicy()
        self.batch = batch
        self.unrouted_queue = UNROUTED_QUEUE
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._bindings: dict[str, set[str]] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._consumers: list[asyncio.Task[None]] = []
        self._transactions: set[asyncio.Future[None]] = set()
        self._subscriptions: list[LocalSubscription] = []

    async def connect(self) -> None:
        if self._db is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(self.path, isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.executescript(_SCHEMA)
        async with db.execute("PRAGMA table_info(messages)") as cursor:
            if "redeliveries" not in {row[1] async for row in cursor}:  # a file from before the column
                await db.execute("ALTER TABLE messages ADD COLUMN redeliveries INTEGER NOT NULL DEFAULT 0")
        # Whatever was being handled when the last process stopped was not acknowledged: deliver it
        # again, unless it has now taken down REDELIVERY_LIMIT consumers.
        await db.execute("UPDATE messages SET redeliveries=redeliveries+1 WHERE state='inflight'")
        await db.execute(
            "UPDATE messages SET state='dead', dead_at=?, error=? WHERE state='inflight' AND redeliveries>?",
            (time.time(), f"lost with its consumer more than {REDELIVERY_LIMIT} times",
             REDELIVERY_LIMIT))
        await db.execute("UPDATE messages SET state='ready' WHERE state='inflight'")
        async with db.execute("SELECT queue, pattern FROM bindings") as rows:
            async for queue, pattern in rows:
                self._bindings.setdefault(queue, set()).add(pattern)
        self._db = db

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close()
        for task in self._consumers:
            task.cancel()
        try:
            for result in await asyncio.gather(*self._consumers, return_exceptions=True):
                if isinstance(result, Exception):
                    log.error("a consumer had failed", exc_info=result)
            self._consumers.clear()
            # transactions their consumers started finish (or fail) before the connection closes
            await asyncio.gather(*self._transactions, return_exceptions=True)
        finally:
            # closed whatever happened: an open connection's thread would keep the process from exiting
            if self._db is not None:
                await self._db.close()
                self._db = None

    async def ping(self) -> bool:
        if self._db is None:
            return False
        async with self._lock:
            await self._db.execute("SELECT 1")
        return True

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("LocalBus is not connected")
        return self._db

    async def _transaction(self, statements: Sequence[tuple[str, Sequence[object]]]) -> None:
        """Run ``statements`` in one transaction, which runs to its end even if the caller is cancelled.

        Cancelling the caller half-way (a consumer stopped by :meth:`close`) would otherwise leave a BEGIN
        the connection's thread has already run, and the next transaction on it would fail.
        """
        task = asyncio.ensure_future(self._locked_transaction(statements))
        self._transactions.add(task)
        task.add_done_callback(self._transactions.discard)
        await asyncio.shield(task)

    async def _locked_transaction(self, statements: Sequence[tuple[str, Sequence[object]]]) -> None:
        async with self._lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    await self.db.execute(sql, params)
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            await self.db.execute("COMMIT")

    def _queues_for(self, routing_key: str) -> list[str]:
        return [queue for queue, patterns in self._bindings.items()
                if any(topic_matches(p, routing_key) for p in patterns)]

    async def publish(self, messages: Sequence[Message]) -> None:
        now = time.time()
        rows: list[tuple[str, Sequence[object]]] = []
        touched: set[str] = set()
        for m in messages:
            queues = self._queues_for(m.routing_key)
            if not queues and not any(s.matches(m.routing_key) for s in self._subscriptions):
                queues = [UNROUTED_QUEUE]
            for queue in queues:
                rows.append(_insert(queue, m, attempt=1, available_at=now))
                touched.add(queue)
        if rows:
            await self._transaction(rows)
        for queue in touched:
            self._wake(queue)
        for subscription in self._subscriptions:
            for m in messages:
                subscription.offer(m)

    async def declare(self, queue: str, bindings: Sequence[str]) -> None:
        await self._transaction([("INSERT OR IGNORE INTO bindings VALUES (?, ?)", (queue, p)) for p in bindings])
        self._bindings.setdefault(queue, set()).update(bindings)

    async def consume(self, queue: str, bindings: Sequence[str], handler: Handler) -> None:
        await self.declare(queue, bindings)
        self._consumers.append(asyncio.create_task(self._consume(queue, handler), name=f"consume:{queue}"))

    async def subscribe(self, bindings: Sequence[str], handler: Handler, *,
                        on_resubscribed: Resubscribed | None = None) -> LocalSubscription:
        """In-memory fan-out: ``handler`` gets what this bus publishes from now on (``on_resubscribed`` is
        never called, there is no connection to lose)."""
        subscription = LocalSubscription(tuple(bindings), handler, self._subscriptions)
        self._subscriptions.append(subscription)
        return subscription

    def _wake(self, queue: str) -> None:
        self._wakeups.setdefault(queue, asyncio.Event()).set()

    async def _consume(self, queue: str, handler: Handler) -> None:
        wakeup = self._wakeups.setdefault(queue, asyncio.Event())
        while True:
            wakeup.clear()
            claimed, next_due = await self._claim(queue)
            for row_id, message in claimed:
                await self._deliver(queue, row_id, message, handler)
            if claimed:
                continue
            timeout = None if next_due is None else max(0.0, next_due - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout)

    async def _claim(self, queue: str) -> tuple[list[tuple[int, Message]], float | None]:
        now = time.time()
        async with self._lock:
            async with self.db.execute(
                "SELECT id, message_id, routing_key, body, headers, attempt FROM messages "
                "WHERE queue=? AND state='ready' AND available_at<=? ORDER BY id LIMIT ?",
                (queue, now, self.batch),
            ) as cursor:
                rows = list(await cursor.fetchall())
            if rows:
                marks = ",".join("?" * len(rows))
                await self.db.execute(f"UPDATE messages SET state='inflight' WHERE id IN ({marks})",
                                      [r[0] for r in rows])
                claimed = []
                for row_id, message_id, routing_key, body, headers, attempt in rows:
                    h = json.loads(headers)
                    h[ATTEMPT_HEADER] = str(attempt)
                    claimed.append((row_id, Message(message_id, routing_key, bytes(body), h)))
                return claimed, None
            async with self.db.execute(
                "SELECT MIN(available_at) FROM messages WHERE queue=? AND state='ready'", (queue,)
            ) as cursor:
                (next_due,) = await cursor.fetchone() or (None,)
        return [], next_due

    async def _deliver(self, queue: str, row_id: int, message: Message, handler: Handler) -> None:
        attempt = int(message.headers.get(ATTEMPT_HEADER, "1"))
        try:
            await handler(message)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"[:2000]
            if isinstance(error, PermanentFailure) or attempt >= self.retry.attempts:
                log.error("dead-lettering message", extra={"queue": queue, "message_id": message.message_id,
                                                           "attempt": attempt, "error": reason})
                await self._transaction([(
                    "UPDATE messages SET state='dead', error=?, dead_at=? WHERE id=?",
                    (reason, time.time(), row_id))])
            else:
                log.warning("handler failed, will retry", extra={"queue": queue, "message_id": message.message_id,
                                                                 "attempt": attempt, "error": reason})
                await self._transaction([(
                    "UPDATE messages SET state='ready', attempt=?, available_at=?, error=? WHERE id=?",
                    (attempt + 1, time.time() + self.retry.delay(attempt), reason, row_id))])
            return
        await self._transaction([("DELETE FROM messages WHERE id=?", (row_id,))])

    async def dead_letters(self, queue: str) -> list[DeadLetter]:
        async with self._lock, self.db.execute(
            "SELECT message_id, routing_key, body, headers, attempt, error, dead_at FROM messages "
            "WHERE queue=? AND state='dead' ORDER BY id", (queue,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [DeadLetter(Message(mid, rk, bytes(body), {**json.loads(h), ERROR_HEADER: err}),
                           queue, attempt, err, datetime.fromtimestamp(dead_at, UTC) if dead_at else None)
                for mid, rk, body, h, attempt, err, dead_at in rows]

    async def replay_dead_letters(self, queue: str, message_ids: Sequence[str] | None = None) -> int:
        where, params = "queue=? AND state='dead'", [queue]
        if message_ids is not None:
            if not message_ids:
                return 0
            where += f" AND message_id IN ({','.join('?' * len(message_ids))})"
            params += list(message_ids)
        async with self._lock:
            cursor = await self.db.execute(
                f"UPDATE messages SET state='ready', attempt=1, available_at=?, error='', dead_at=NULL WHERE {where}",
                [time.time(), *params])
            count = int(cursor.rowcount)
        self._wake(queue)
        return count

    async def depth(self, queue: str) -> int:
        """Messages waiting or in flight on a queue (dead letters excluded); for tests and metrics."""
        async with self._lock, self.db.execute(
            "SELECT COUNT(*) FROM messages WHERE queue=? AND state!='dead'", (queue,)
        ) as cursor:
            (count,) = await cursor.fetchone() or (0,)
        return int(count)


def _insert(queue: str, m: Message, attempt: int, available_at: float) -> tuple[str, Sequence[object]]:
    headers = {k: v for k, v in m.headers.items() if k != ATTEMPT_HEADER}
    return ("INSERT INTO messages (queue, message_id, routing_key, body, headers, attempt, available_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (queue, m.message_id, m.routing_key, m.body, json.dumps(headers), attempt, available_at))


class LocalSubscription:
    """One subscriber's copy of what is published, handed to its handler in order by a task of its own."""

    def __init__(self, bindings: tuple[str, ...], handler: Handler, registry: list[LocalSubscription],
                 backlog: int = SUBSCRIPTION_BACKLOG) -> None:
        self.bindings = bindings
        self.handler = handler
        #: Messages dropped because the subscriber was more than ``backlog`` behind.
        self.dropped = 0
        self._registry = registry
        self._waiting: asyncio.Queue[Message] = asyncio.Queue(maxsize=backlog)
        self._worker = asyncio.create_task(self._work(), name=f"subscribe:{','.join(bindings)}")

    def matches(self, routing_key: str) -> bool:
        return any(topic_matches(p, routing_key) for p in self.bindings)

    def offer(self, message: Message) -> None:
        if not self.matches(message.routing_key) or self._worker.done():
            return
        if self._waiting.full():  # drop the oldest, as RabbitMQ's x-max-length does
            self._waiting.get_nowait()
            self.dropped += 1
            log.warning("subscriber behind, oldest message dropped", extra={"bindings": self.bindings})
        self._waiting.put_nowait(message)

    async def _work(self) -> None:
        while True:
            message = await self._waiting.get()
            try:
                await self.handler(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("subscriber failed; the message is dropped",
                              extra={"bindings": self.bindings, "message_id": message.message_id})

    async def close(self) -> None:
        if self in self._registry:
            self._registry.remove(self)
        self._worker.cancel()
        if asyncio.current_task() is not self._worker:  # a handler may close its own subscription
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
