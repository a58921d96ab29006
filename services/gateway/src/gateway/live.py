"""The live feed: worklist changes pushed to signed-in users, in order, none missing, none twice.

One bus subscription per process (:class:`LiveHub`) hands each ``WorklistItemChangedV1`` to the feeds of its
organisation. A :class:`Feed` is registered before it reads anything, so live changes wait in its queue while it
reads the backlog from worklist (``GET /worklist/changes``, the source of truth); then it sends what waits, skipping
what it already sent. Sequences are gap-free per organisation, so a live change that skips some makes the feed read
the missing ones from worklist first, and a re-created bus subscription (changes lost meanwhile) makes every feed
read what came after its last. A feed whose queue fills up is not kept alive at the cost of memory: it ends with
:attr:`CloseCode.FELL_BEHIND`, and the client resumes after the last sequence it saw.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol
from uuid import UUID

import aiohttp
from pydantic import BaseModel, ValidationError

from radcommon.auth import Principal
from radcommon.contracts import WorklistItemChangedV1
from radcommon.messaging import Bus, Message, Subscription

log = logging.getLogger(__name__)

#: No change comes after this sequence: asking for what does gives only the newest sequence. (The column is a
#: bigint, but worklist binds the parameter as a 32-bit integer on PostgreSQL.)
NEWEST = 2**31 - 1


class CloseCode(IntEnum):
    """WebSocket close codes of the feed (RFC 6455 7.4; 4000-4999 are the application's)."""

    GOING_AWAY = 1001
    TRY_AGAIN_LATER = 1013
    BAD_MESSAGE = 4400
    UNAUTHENTICATED = 4401
    FORBIDDEN = 4403
    FELL_BEHIND = 4408
    TOO_MANY_CONNECTIONS = 4429


class FeedClosed(Exception):
    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(f"{int(code)} {reason}")
        self.code, self.reason = code, reason


@dataclass(frozen=True)
class Change:
    sequence: int
    item_id: str
    change: str
    item: dict[str, Any]

    def message(self) -> dict[str, Any]:
        return {"type": "worklist.changed", "sequence": self.sequence, "item_id": self.item_id,
                "change": self.change, "item": self.item}


class ChangesPage(BaseModel):
    changes: list[Change]
    last_sequence: int


class ChangeSource(Protocol):
    async def changes_after(self, token: str, after: int, limit: int) -> ChangesPage: ...


Send = Callable[[dict[str, Any]], Awaitable[None]]


class _Signal:
    def __init__(self, name: str) -> None:
        self.name = name


RESYNC, BEHIND = _Signal("resync"), _Signal("behind")


class Feed:
    """One socket's changes. ``after`` is the last sequence the client has (``None``: only what comes from now)."""

    def __init__(self, source: ChangeSource, send: Send, token: Callable[[], str], *, after: int | None,
                 queue_size: int, page_size: int = 500) -> None:
        self.source, self.send, self.token = source, send, token
        self.after, self.queue_size, self.page_size = after, queue_size, page_size
        #: The last sequence sent to the client.
        self.last = 0
        self._waiting: asyncio.Queue[Change | _Signal] = asyncio.Queue()
        self._resync_pending = False
        self._behind = False

    def offer(self, change: Change) -> None:
        """Queue a live change (never waits); past ``queue_size`` waiting, the feed has fallen behind."""
        if self._behind:
            return
        if self._waiting.qsize() >= self.queue_size:
            self._fall_behind()
            return
        self._waiting.put_nowait(change)

    def resync(self) -> None:
        """Read from worklist what came after the last sequence sent (changes were lost, or a token renewed)."""
        if not self._behind and not self._resync_pending:
            self._resync_pending = True
            self._waiting.put_nowait(RESYNC)

    def _fall_behind(self) -> None:
        self._behind = True
        while not self._waiting.empty():  # let the memory go at once
            self._waiting.get_nowait()
        self._waiting.put_nowait(BEHIND)

    async def run(self) -> None:
        """Backlog, ``ready``, then live changes, until a :class:`FeedClosed` (or cancellation) ends it."""
        await self._backlog()
        await self.send({"type": "ready", "last_sequence": self.last})
        while True:
            waiting = await self._waiting.get()
            if waiting is BEHIND:
                raise FeedClosed(CloseCode.FELL_BEHIND, "fell behind; resume after the last sequence you saw")
            if waiting is RESYNC:
                self._resync_pending = False
                await self._catch_up()
            elif isinstance(waiting, Change):
                await self._live(waiting)

    async def _backlog(self) -> None:
        if self.after is None:
            self.last = (await self._page(NEWEST, 1)).last_sequence
            return
        self.last = self.after
        newest = await self._catch_up()
        # The client claims changes this organisation never had (another organisation's, a restored database):
        # go on from the real newest; ready's last_sequence below its "after" tells it to reload.
        self.last = min(self.last, newest)

    async def _live(self, change: Change) -> None:
        if change.sequence <= self.last:
            return  # sent already (from the backlog, or published twice)
        if change.sequence > self.last + 1:
            await self._catch_up()  # some were lost on the way; worklist has them all, as they committed first
            if change.sequence > self.last + 1:
                raise FeedClosed(CloseCode.TRY_AGAIN_LATER, "missed changes could not be read; resume")
            if change.sequence <= self.last:
                return
        await self._send(change)

    async def _catch_up(self) -> int:
        """Send every change worklist has after ``last``; returns the organisation's newest sequence."""
        while True:
            before = self.last
            page = await self._page(before, self.page_size)
            for change in page.changes:
                if change.sequence > self.last:
                    await self._send(change)
            if len(page.changes) < self.page_size or self.last == before:
                return page.last_sequence

    async def _page(self, after: int, limit: int) -> ChangesPage:
        return await self.source.changes_after(self.token(), after, limit)

    async def _send(self, change: Change) -> None:
        await self.send(change.message())
        self.last = change.sequence


class LiveHub:
    """The process's one subscription to worklist changes, fanned out to the feeds of each organisation."""

    def __init__(self, bus: Bus, *, max_connections: int, max_connections_per_user: int) -> None:
        self.bus = bus
        self.max_connections, self.max_connections_per_user = max_connections, max_connections_per_user
        self.connections = 0
        self._feeds: dict[UUID, set[Feed]] = {}
        self._per_user: Counter[UUID] = Counter()
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe([WorklistItemChangedV1.routing_key], self.deliver,
                                                      on_resubscribed=self.resync_all)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None

    @contextmanager
    def connection(self) -> Iterator[None]:
        """Counts a socket from its upgrade on, before anyone knows whose it is."""
        if self.connections >= self.max_connections:
            raise FeedClosed(CloseCode.TRY_AGAIN_LATER, "the gateway is at its connection limit")
        self.connections += 1
        try:
            yield
        finally:
            self.connections -= 1

    @contextmanager
    def joined(self, principal: Principal, feed: Feed) -> Iterator[None]:
        if self._per_user[principal.user_id] >= self.max_connections_per_user:
            raise FeedClosed(CloseCode.TOO_MANY_CONNECTIONS, "too many live connections for this user")
        self._per_user[principal.user_id] += 1
        feeds = self._feeds.setdefault(principal.organization_id, set())
        feeds.add(feed)
        try:
            yield
        finally:
            feeds.discard(feed)
            if not feeds:
                self._feeds.pop(principal.organization_id, None)
            self._per_user[principal.user_id] -= 1
            if self._per_user[principal.user_id] <= 0:
                del self._per_user[principal.user_id]

    async def deliver(self, message: Message) -> None:
        try:
            event = WorklistItemChangedV1.model_validate_json(message.body)
        except ValidationError:
            log.warning("not a worklist change; ignored", extra={"message_id": message.message_id})
            return
        change = Change(event.sequence, str(event.item_id), event.change, dict(event.item))
        for feed in list(self._feeds.get(event.organization_id, ())):
            feed.offer(change)

    async def resync_all(self) -> None:
        for feeds in list(self._feeds.values()):
            for feed in list(feeds):
                feed.resync()


class WorklistChangeSource:
    """``GET /worklist/changes`` with the user's own token: worklist checks it again, revocation included."""

    def __init__(self, worklist_url: str, client: Callable[[], aiohttp.ClientSession]) -> None:
        self.url = f"{worklist_url.rstrip('/')}/worklist/changes"
        self.client = client

    async def changes_after(self, token: str, after: int, limit: int) -> ChangesPage:
        try:
            async with self.client().get(self.url, params={"after": str(after), "limit": str(limit)},
                                         headers={"Authorization": f"Bearer {token}"}) as response:
                if response.status == 401:
                    raise FeedClosed(CloseCode.UNAUTHENTICATED, "worklist refused the token")
                if response.status == 403:
                    raise FeedClosed(CloseCode.FORBIDDEN, "your role may not see the worklist")
                if response.status != 200:
                    raise FeedClosed(CloseCode.TRY_AGAIN_LATER, f"worklist answered {response.status}")
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise FeedClosed(CloseCode.TRY_AGAIN_LATER, "worklist is not answering") from error
        try:
            return ChangesPage.model_validate_json(body)
        except ValidationError as error:
            raise FeedClosed(CloseCode.TRY_AGAIN_LATER, "worklist answered something unexpected") from error
