"""A running service: its database, consumers, outbox relay, background tasks and HTTP app.

Each service's ``bootstrap.py`` builds one of these; ``telerad up`` starts all of them in one
process on the local bus, ``telerad serve <service>`` one of them on RabbitMQ and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from radcommon.consumer import EventConsumer
from radcommon.db import Database
from radcommon.messaging import Bus
from radcommon.outbox import OutboxRelay

log = logging.getLogger(__name__)

BackgroundTask = Callable[[], Awaitable[None]]


@dataclass
class Service:
    name: str
    db: Database | None
    bus: Bus
    app: web.Application
    migrations: Path | None
    http_host: str = "127.0.0.1"
    http_port: int = 0
    consumers: list[EventConsumer] = field(default_factory=list)
    background: list[BackgroundTask] = field(default_factory=list)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    relay: OutboxRelay | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    async def prepare(self) -> None:
        """Create and migrate the database, declare the queues: what must be there before anyone publishes."""
        if self.db is not None and self.migrations is not None:
            await self.db.ensure_created()
            await self.db.migrate(self.migrations)
        for consumer in self.consumers:
            await self.bus.declare(consumer.queue, consumer.bindings)

    async def start(self) -> None:
        if self.relay is None and self.db is not None:
            self.relay = OutboxRelay(self.db, self.bus)
        for consumer in self.consumers:
            await self.bus.consume(consumer.queue, consumer.bindings, consumer)
        for task in [*([self.relay.run] if self.relay else []), *self.background]:
            self._tasks.append(asyncio.create_task(self._supervise(task), name=f"{self.name}:{task}"))
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.http_host, self.http_port, reuse_address=True)
        await site.start()
        self.http_port = self._runner.addresses[0][1]
        log.info("service started", extra={"service": self.name, "http": self.http_url})

    @property
    def http_url(self) -> str:
        return f"http://{self.http_host}:{self.http_port}"

    async def _supervise(self, task: BackgroundTask) -> None:
        while True:
            try:
                await task()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task failed; restarting", extra={"service": self.name})
                await asyncio.sleep(1)

    async def stop(self) -> None:
        for callback in self.on_stop:
            with contextlib.suppress(Exception):
                await callback()
        if self._runner is not None:
            await self._runner.cleanup()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.db is not None:
            await self.db.dispose()
