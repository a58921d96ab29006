"""``GET /ws``: the live feed (:mod:`gateway.live`) over a WebSocket (RFC 6455).

Browsers cannot set a header on a WebSocket, so the token comes in the ``Authorization`` header or as the first
message, ``{"type": "auth", "access_token": "..."}``; the client sends a new ``auth`` message before its token
expires. The socket is closed with a :class:`~gateway.live.CloseCode` and a reason whenever the feed cannot go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web
from prometheus_client import Gauge

from gateway.domain import LIVE_ROUTE, may_call
from gateway.live import NEWEST, ChangeSource, CloseCode, Feed, FeedClosed, LiveHub
from radcommon.auth import Principal, TokenError, TokenVerifier
from radcommon.messaging import Bus
from radcommon.problems import Problem

log = logging.getLogger(__name__)

LIVE_CONNECTIONS = Gauge("telerad_gateway_live_connections", "Open live-feed WebSockets")


@dataclass(frozen=True)
class LiveOptions:
    max_connections: int = 10_000
    max_connections_per_user: int = 8
    queue_size: int = 1_000
    page_size: int = 500
    heartbeat_seconds: float = 30.0
    auth_timeout_seconds: float = 5.0
    send_timeout_seconds: float = 10.0
    max_message_bytes: int = 16 * 1024


hub_key = web.AppKey("live_hub", LiveHub)
source_key = web.AppKey[ChangeSource]("live_change_source")
live_verifier_key = web.AppKey("live_verifier", TokenVerifier)
options_key = web.AppKey("live_options", LiveOptions)
sockets_key = web.AppKey[set[web.WebSocketResponse]]("live_sockets")


class UpgradeRequired(Problem):
    status_code, title = 426, "Upgrade Required"


def add_live_route(app: web.Application, *, bus: Bus, source: ChangeSource, verifier: TokenVerifier,
                   options: LiveOptions) -> None:
    app[hub_key] = LiveHub(bus, max_connections=options.max_connections,
                           max_connections_per_user=options.max_connections_per_user)
    app[source_key], app[live_verifier_key], app[options_key] = source, verifier, options
    app[sockets_key] = set()
    app.router.add_get(LIVE_ROUTE[1], live)

    async def subscription(app: web.Application) -> AsyncIterator[None]:
        await app[hub_key].start()
        yield
        await app[hub_key].stop()

    async def close_sockets(app: web.Application) -> None:
        sockets: set[web.WebSocketResponse] = app[sockets_key]
        for ws in list(sockets):
            await ws.close(code=CloseCode.GOING_AWAY, message=b"the gateway is shutting down")

    app.cleanup_ctx.append(subscription)
    app.on_shutdown.append(close_sockets)


async def live(request: web.Request) -> web.StreamResponse:
    options = request.app[options_key]
    ws = web.WebSocketResponse(heartbeat=options.heartbeat_seconds, max_msg_size=options.max_message_bytes)
    if not ws.can_prepare(request).ok:
        raise UpgradeRequired("this is a WebSocket: connect with Upgrade: websocket")
    await ws.prepare(request)
    request.app[sockets_key].add(ws)
    LIVE_CONNECTIONS.inc()
    try:
        await LiveSocket(request, ws).serve()
    except FeedClosed as closed:
        log.info("live feed closed", extra={"code": int(closed.code), "reason": closed.reason})
        await ws.close(code=closed.code, message=closed.reason.encode()[:120])
    except ConnectionError:
        pass  # the client went away
    finally:
        LIVE_CONNECTIONS.dec()
        request.app[sockets_key].discard(ws)
    return ws


class LiveSocket:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.headers = request.headers
        self.query = request.query
        self.hub = request.app[hub_key]
        self.source = request.app[source_key]
        self.verifier = request.app[live_verifier_key]
        self.options = request.app[options_key]
        self.token = ""

    async def serve(self) -> None:
        with self.hub.connection():
            after = _after(self.query.get("after"))
            signed_in = await self._sign_in(after)
            if signed_in is None:
                return  # the client left before signing in
            principal, after = signed_in
            feed = Feed(self.source, self._send, lambda: self.token, after=after,
                        queue_size=self.options.queue_size, page_size=self.options.page_size)
            with self.hub.joined(principal, feed):
                log.info("live feed opened", extra={"user_id": str(principal.user_id), "after": after})
                await _first_to_end(feed.run(), self._read(principal, feed))

    async def _sign_in(self, after: int | None) -> tuple[Principal, int | None] | None:
        header = self.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise FeedClosed(CloseCode.UNAUTHENTICATED, "a bearer token is required")
            self.token = token.strip()
            return await self._verified(self.token), after
        try:
            async with asyncio.timeout(self.options.auth_timeout_seconds):
                while True:
                    message = await self._receive()
                    if message is None:
                        return None
                    if message.get("type") == "resume":
                        after = _after(message.get("after"))
                    elif message.get("type") == "auth":
                        if "after" in message:
                            after = _after(message["after"])
                        principal = await self._verified(message.get("access_token"))
                        self.token = message["access_token"]
                        return principal, after
                    else:
                        raise FeedClosed(CloseCode.UNAUTHENTICATED, 'authenticate first: {"type": "auth", ...}')
        except TimeoutError:
            raise FeedClosed(CloseCode.UNAUTHENTICATED,
                             f"no token within {self.options.auth_timeout_seconds:g} s") from None

    async def _verified(self, token: object) -> Principal:
        if not isinstance(token, str) or not token:
            raise FeedClosed(CloseCode.UNAUTHENTICATED, "access_token is required")
        try:
            principal = await self.verifier.verify(token)
        except TokenError as error:
            raise FeedClosed(CloseCode.UNAUTHENTICATED, f"invalid token: {error.reason}") from None
        if not may_call(principal.roles, LIVE_ROUTE):
            raise FeedClosed(CloseCode.FORBIDDEN, "your role may not see the worklist")
        return principal

    async def _read(self, principal: Principal, feed: Feed) -> None:
        """Renewals, until the client leaves or its token expires unrenewed."""
        while True:
            remaining = (principal.expires_at - datetime.now(UTC)).total_seconds()
            if remaining <= 0:
                raise FeedClosed(CloseCode.UNAUTHENTICATED, "the token expired; renew it before it does")
            try:
                message = await self._receive(wait=remaining)
            except TimeoutError:
                continue
            if message is None:
                return
            if message.get("type") != "auth":
                raise FeedClosed(CloseCode.BAD_MESSAGE, 'only {"type": "auth", ...} is expected now')
            renewed = await self._verified(message.get("access_token"))
            if (renewed.user_id, renewed.organization_id) != (principal.user_id, principal.organization_id):
                raise FeedClosed(CloseCode.FORBIDDEN, "the new token is another user's")
            principal, self.token = renewed, message["access_token"]
            feed.resync()  # worklist sees the new token at once (a revoked session ends here)

    async def _receive(self, wait: float | None = None) -> dict[str, Any] | None:
        """The next JSON object from the client (raises TimeoutError after ``wait`` s); ``None`` once it closed."""
        message = await self.ws.receive(timeout=wait)
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return None
        if message.type != WSMsgType.TEXT:
            raise FeedClosed(CloseCode.BAD_MESSAGE, "messages are JSON text")
        try:
            data = json.loads(message.data)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise FeedClosed(CloseCode.BAD_MESSAGE, "messages are JSON objects")
        return data

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            async with asyncio.timeout(self.options.send_timeout_seconds):
                await self.ws.send_json(message)
        except TimeoutError:
            raise FeedClosed(CloseCode.FELL_BEHIND, "fell behind; resume after the last sequence you saw") from None


def _after(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= NEWEST:
        raise FeedClosed(CloseCode.BAD_MESSAGE, "after is the last sequence seen, an integer >= 0")
    return value


async def _first_to_end(*coroutines: Coroutine[Any, Any, None]) -> None:
    """Run them together until one ends; the others are cancelled, and the one's error raised."""
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    for task in tasks:
        if task in done and (error := task.exception()) is not None:
            raise error
