"""The RabbitMQ transport of distributed mode, with the semantics of :mod:`radcommon.messaging.bus`.

Topology, for an exchange ``E`` and a consuming queue ``Q``:

- ``E`` is a durable topic exchange whose ``alternate-exchange`` is a fanout exchange bound to a quorum queue
  (``telerad.unrouted`` for the default exchange, ``<E>.unrouted`` otherwise): an unroutable message is kept;
- ``Q`` is a durable quorum queue bound to ``E`` with the consumer's patterns;
- ``Q.retry.<n>`` (n = 1 .. attempts-1) holds a message that failed attempt ``n`` for ``RetryPolicy.delay(n)``
  (``x-message-ttl``), then dead-letters it back to ``Q`` through the default exchange;
- ``Q.dead`` keeps what failed ``attempts`` times or raised :class:`PermanentFailure`, the error in a header.
  ``Q`` dead-letters there too, should the broker ever give up on a message (a quorum queue delivery limit).

A subscription (``subscribe``, broadcast, at most once) is a server-named, exclusive, auto-delete, non-durable
classic queue bound to ``E``, holding at most ``SUBSCRIPTION_BACKLOG`` messages (``x-overflow: drop-head``), on a
channel of its own that is not restored by aio-pika: when it closes (a connection loss), a new queue is declared
and bound once the connection is back, and ``on_resubscribed`` is called.

The routing key travels in the AMQP ``type`` property, so a message that came back through a retry queue
still carries it. The retry delays are queue arguments: a changed :class:`RetryPolicy` needs the old retry
queues deleted first (RabbitMQ refuses to redeclare a queue with other arguments).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
    DeliveryMode,
    ExchangeType,
)

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
    dead_letter_queue,
    retry_queue,
)

log = logging.getLogger(__name__)

DEFAULT_EXCHANGE = "telerad.events"
_QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}
#: When our consumer dead-lettered a message (ISO 8601, microseconds); the listing's order.
DEAD_AT_HEADER = "x-telerad-dead-at"
_NEVER = datetime.max.replace(tzinfo=UTC)
# Headers the broker adds on redelivery and dead-lettering; they are not part of the message.
_BROKER_HEADERS = ("x-death", "x-first-death-", "x-last-death-", "x-delivery-count")
#: Seconds between attempts to re-create a lost subscription.
RESUBSCRIBE_DELAY = 0.5


class PublishFailed(Exception):
    """The broker did not confirm every message of a :meth:`AioPikaBus.publish`; publish them again."""


@dataclass
class _Consumer:
    queue: str
    worker: asyncio.Task[None]


class AioPikaBus:
    """The :class:`~radcommon.messaging.bus.Bus` on RabbitMQ (aio-pika, robust connection, publisher confirms).

    Parameters
    ----------
    url
        ``amqp://user:password@host:port/vhost``; query options of aio-pika such as ``name`` (the connection
        name shown by the broker) and ``reconnect_interval`` apply.
    exchange
        The topic exchange events are published to.
    retry
        Attempts and backoff for failing handlers.
    prefetch
        Unacknowledged messages the broker sends ahead to each consumer; they are still handled one at a time.
    publish_timeout
        Seconds to wait for the broker's confirmation of one message.
    """

    def __init__(self, url: str, exchange: str = DEFAULT_EXCHANGE, retry: RetryPolicy | None = None,
                 prefetch: int = 32, *, publish_timeout: float = 30.0) -> None:
        self.url = url
        self.exchange = exchange
        self.retry = retry or RetryPolicy()
        self.prefetch = prefetch
        self.publish_timeout = publish_timeout
        self.unrouted_queue = UNROUTED_QUEUE if exchange == DEFAULT_EXCHANGE else f"{exchange}.unrouted"
        #: How often the connection was re-established after a loss.
        self.reconnects = 0
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractRobustExchange | None = None
        self._consumers: list[_Consumer] = []
        self._subscriptions: list[AioPikaSubscription] = []

    async def connect(self) -> None:
        if self._connection is not None:
            return
        connection = await aio_pika.connect_robust(self.url)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            unrouted = await channel.declare_exchange(self.unrouted_queue, ExchangeType.FANOUT, durable=True)
            kept = await channel.declare_queue(self.unrouted_queue, durable=True, arguments=_QUORUM)
            await kept.bind(unrouted, routing_key="")
            self._exchange = await channel.declare_exchange(
                self.exchange, ExchangeType.TOPIC, durable=True,
                arguments={"alternate-exchange": self.unrouted_queue})
        except BaseException:
            await connection.close()
            raise
        connection.reconnect_callbacks.add(self._on_reconnect)
        self._connection, self._channel = connection, channel

    def _on_reconnect(self, _connection: AbstractRobustConnection | None) -> None:
        self.reconnects += 1
        log.warning("reconnected to the broker", extra={"exchange": self.exchange, "reconnects": self.reconnects})

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close()
        # Unacknowledged deliveries go back to their queues when the connection closes.
        for consumer in self._consumers:
            consumer.worker.cancel()
        for consumer, result in zip(self._consumers, await asyncio.gather(
                *(c.worker for c in self._consumers), return_exceptions=True), strict=True):
            if not isinstance(result, asyncio.CancelledError | None):
                log.error("consumer had stopped", extra={"queue": consumer.queue}, exc_info=result)
        self._consumers.clear()
        connection, self._connection, self._channel, self._exchange = self._connection, None, None, None
        if connection is not None:
            await connection.close()

    async def ping(self) -> bool:
        connection = self._connection
        return connection is not None and not connection.is_closed and connection.connected.is_set()

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise RuntimeError("AioPikaBus is not connected")
        return self._connection

    @property
    def channel(self) -> AbstractRobustChannel:
        if self._channel is None:
            raise RuntimeError("AioPikaBus is not connected")
        return self._channel

    async def publish(self, messages: Sequence[Message]) -> None:
        """Publish ``messages`` in order; returns once the broker confirmed all of them.

        Raises when any was not confirmed (nacked, returned, or the connection was lost): the caller
        publishes the batch again, and consumers drop the duplicates through their inbox.
        """
        if self._exchange is None:
            raise RuntimeError("AioPikaBus is not connected")
        exchange = self._exchange
        # One channel, tasks started in call order: the frames go out in that order, the confirms overlap.
        # The timeout also bounds the wait for a lost connection to come back.
        async with asyncio.timeout(self.publish_timeout):
            results = await asyncio.gather(
                *(exchange.publish(_outgoing(m, _without(m.headers, ATTEMPT_HEADER)), m.routing_key, mandatory=True)
                  for m in messages),
                return_exceptions=True)
        failed = [(m, r) for m, r in zip(messages, results, strict=True) if not isinstance(r, aiormq.spec.Basic.Ack)]
        if failed:
            message, result = failed[0]
            raise PublishFailed(f"{len(failed)} of {len(messages)} messages not confirmed; "
                                f"first {message.message_id}: {result!r}") from _as_exception(result)

    async def declare(self, queue: str, bindings: Sequence[str]) -> None:
        channel = await self._temporary_channel(publisher_confirms=False)
        try:
            await self._declare_queue(channel, queue, bindings)
            for attempt in range(1, self.retry.attempts):
                await channel.declare_queue(retry_queue(queue, attempt), durable=True, arguments={
                    **_QUORUM,
                    "x-message-ttl": max(0, round(self.retry.delay(attempt) * 1000)),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": queue,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                })
            await channel.declare_queue(dead_letter_queue(queue), durable=True, arguments=_QUORUM)
        finally:
            await channel.close()

    async def _declare_queue(self, channel: AbstractChannel, queue: str, bindings: Sequence[str]) -> AbstractQueue:
        declared = await channel.declare_queue(queue, durable=True, arguments={
            **_QUORUM, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead_letter_queue(queue),
            "x-delivery-limit": REDELIVERY_LIMIT})
        for pattern in bindings:
            await declared.bind(self.exchange, routing_key=pattern)
        return declared

    async def consume(self, queue: str, bindings: Sequence[str], handler: Handler) -> None:
        """Declare ``queue``, then hand its messages to ``handler`` one at a time, in order, until :meth:`close`.

        The robust channel re-declares and re-consumes after a connection loss; deliveries of the lost
        channel that were still waiting here are skipped, as the broker delivers them again.
        """
        await self.declare(queue, bindings)
        channel = await self.connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=self.prefetch)
        declared = await self._declare_queue(channel, queue, bindings)
        waiting: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        worker = asyncio.create_task(self._work(queue, waiting, handler), name=f"consume:{queue}")
        self._consumers.append(_Consumer(queue, worker))
        await declared.consume(waiting.put)

    async def _work(self, queue: str, waiting: asyncio.Queue[AbstractIncomingMessage], handler: Handler) -> None:
        while True:
            incoming = await waiting.get()
            if _stale(incoming):
                continue
            try:
                await self._deliver(queue, incoming, handler)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not settle a delivery; it will be delivered again",
                              extra={"queue": queue, "message_id": incoming.message_id})
                if not _stale(incoming):  # the broker keeps it until we give it back
                    await asyncio.sleep(0.5)  # the publishing channel may be recovering; do not spin
                    with contextlib.suppress(Exception):
                        await incoming.nack(requeue=True)

    async def _deliver(self, queue: str, incoming: AbstractIncomingMessage, handler: Handler) -> None:
        message = _received(incoming)
        attempt = _attempt(message.headers)
        try:
            await handler(message)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # any failure is retried, then dead-lettered
            reason = f"{type(error).__name__}: {error}"[:2000]
            context = {"queue": queue, "message_id": message.message_id, "attempt": attempt, "error": reason}
            if isinstance(error, PermanentFailure) or attempt >= self.retry.attempts:
                log.error("dead-lettering message", extra=context)
                await self._send(self.channel.default_exchange, dead_letter_queue(queue), message,
                                 {ATTEMPT_HEADER: str(attempt), ERROR_HEADER: reason,
                                  DEAD_AT_HEADER: datetime.now(UTC).isoformat()})
            else:
                log.warning("handler failed, will retry", extra=context)
                await self._send(self.channel.default_exchange, retry_queue(queue, attempt), message,
                                 {ATTEMPT_HEADER: str(attempt + 1)})
        await incoming.ack()

    async def _send(self, exchange: AbstractExchange, queue: str, message: Message, headers: Mapping[str, str]) -> None:
        """Put a copy of ``message`` straight on ``queue`` (default exchange) and wait for the confirm."""
        kept = _without(message.headers, ATTEMPT_HEADER, ERROR_HEADER, DEAD_AT_HEADER)
        copy = _outgoing(message, {**kept, **headers})
        async with asyncio.timeout(self.publish_timeout):
            result = await exchange.publish(copy, routing_key=queue, mandatory=True)
        if not isinstance(result, aiormq.spec.Basic.Ack):
            raise PublishFailed(f"{queue} did not confirm {message.message_id}: {result!r}")

    async def subscribe(self, bindings: Sequence[str], handler: Handler, *,
                        on_resubscribed: Resubscribed | None = None) -> AioPikaSubscription:
        """Bind a queue of this subscriber's own (see the module docstring); returns once it is consumed."""
        subscription = AioPikaSubscription(self, tuple(bindings), handler, on_resubscribed)
        await subscription.started()
        self._subscriptions.append(subscription)
        return subscription

    async def _temporary_channel(self, publisher_confirms: bool = True) -> AbstractChannel:
        """A channel that is not restored after a connection loss (its deliveries are requeued instead)."""
        async with asyncio.timeout(self.publish_timeout):
            await self.connection.ready()
        channel = aio_pika.Channel(self.connection, publisher_confirms=publisher_confirms,
                                   on_return_raises=publisher_confirms)
        await channel.initialize()
        return channel

    async def dead_letters(self, queue: str) -> list[DeadLetter]:
        """The dead letters of ``queue``, oldest first; they stay where they are."""
        channel = await self._temporary_channel(publisher_confirms=False)
        try:
            try:
                dead = await channel.declare_queue(dead_letter_queue(queue), passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                return []
            taken: list[AbstractIncomingMessage] = []
            while (incoming := await dead.get(no_ack=False, fail=False)) is not None:
                taken.append(incoming)
            if taken:  # give them all back at once
                await taken[-1].nack(multiple=True, requeue=True)
            # A quorum queue applies returns through its log: a listing right after another one may get a
            # letter the first gave back behind a newer one, so the order is the time each was dead-lettered.
            letters = [_dead_letter(queue, incoming) for incoming in taken]
            return sorted(letters, key=lambda letter: letter.dead_at or _NEVER)
        finally:
            await channel.close()

    async def replay_dead_letters(self, queue: str, message_ids: Sequence[str] | None = None) -> int:
        """Move dead letters (all, or those named) back to ``queue`` with a fresh retry budget."""
        if message_ids is not None and not message_ids:
            return 0
        wanted = None if message_ids is None else set(message_ids)
        channel = await self._temporary_channel(publisher_confirms=True)
        try:
            try:
                dead = await channel.declare_queue(dead_letter_queue(queue), passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                return 0
            replayed = 0
            kept: AbstractIncomingMessage | None = None
            while (incoming := await dead.get(no_ack=False, fail=False)) is not None:
                message = _received(incoming)
                if wanted is not None and message.message_id not in wanted:
                    kept = incoming
                    continue
                await self._send(channel.default_exchange, queue, message, {})
                await incoming.ack()
                replayed += 1
            if kept is not None:  # every other dead letter still held is given back, in order
                await kept.nack(multiple=True, requeue=True)
        finally:
            await channel.close()
        log.info("replayed dead letters", extra={"queue": queue, "count": replayed})
        return replayed

    async def depth(self, queue: str) -> int:
        """Messages ready on a queue (not those delivered and unacknowledged); 0 for a missing queue."""
        channel = await self._temporary_channel(publisher_confirms=False)
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return 0
        finally:
            await channel.close()
        result = declared.declaration_result
        return int(result.message_count or 0)


class AioPikaSubscription:
    """A broadcast subscription on RabbitMQ, re-created whenever its channel is lost (at most once delivery)."""

    def __init__(self, bus: AioPikaBus, bindings: tuple[str, ...], handler: Handler,
                 on_resubscribed: Resubscribed | None, backlog: int = SUBSCRIPTION_BACKLOG) -> None:
        self.bus = bus
        self.bindings = bindings
        self.handler = handler
        self.on_resubscribed = on_resubscribed
        self.backlog = backlog
        #: The server-named queue currently bound, and how often it was re-created.
        self.queue: str | None = None
        self.resubscriptions = 0
        self._started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(), name=f"subscribe:{','.join(bindings)}")

    async def started(self) -> None:
        """Wait until the first queue is bound and consumed; raises what prevented it."""
        try:
            await asyncio.shield(self._started)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self in self.bus._subscriptions:
            self.bus._subscriptions.remove(self)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            channel: AbstractChannel | None = None
            try:
                async with asyncio.timeout(self.bus.publish_timeout):
                    channel = await self.bus._temporary_channel(publisher_confirms=False)
                    waiting = await self._bind(channel)
                if self._started.done():
                    self.resubscriptions += 1
                    log.warning("subscription re-created; what was published meanwhile was missed",
                                extra={"bindings": self.bindings, "queue": self.queue})
                    await self._resubscribed()
                else:
                    self._started.set_result(None)
                await self._deliver_until_closed(channel, waiting)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if not self._started.done():
                    self._started.set_exception(error)
                    return
                log.warning("subscription lost; re-creating it",
                            extra={"bindings": self.bindings, "error": repr(error)})
            finally:
                if channel is not None and not channel.is_closed:
                    with contextlib.suppress(Exception):
                        await channel.close()
            await asyncio.sleep(RESUBSCRIBE_DELAY)

    async def _bind(self, channel: AbstractChannel) -> asyncio.Queue[AbstractIncomingMessage]:
        await channel.set_qos(prefetch_count=self.bus.prefetch)
        queue = await channel.declare_queue(None, durable=False, exclusive=True, auto_delete=True, arguments={
            "x-queue-type": "classic", "x-max-length": self.backlog, "x-overflow": "drop-head"})
        for pattern in self.bindings:
            await queue.bind(self.bus.exchange, routing_key=pattern)
        waiting: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        await queue.consume(waiting.put)
        self.queue = queue.name
        return waiting

    async def _resubscribed(self) -> None:
        if self.on_resubscribed is None:
            return
        try:
            await self.on_resubscribed()
        except Exception:
            log.exception("on_resubscribed failed", extra={"bindings": self.bindings})

    async def _deliver_until_closed(self, channel: AbstractChannel,
                                    waiting: asyncio.Queue[AbstractIncomingMessage]) -> None:
        closed = asyncio.ensure_future(channel.closed())
        try:
            while True:
                if waiting.empty():
                    if closed.done():
                        return
                    getting = asyncio.ensure_future(waiting.get())
                    await asyncio.wait({getting, closed}, return_when=asyncio.FIRST_COMPLETED)
                    if not getting.done():
                        getting.cancel()
                        continue
                    incoming = getting.result()
                else:
                    incoming = waiting.get_nowait()
                await self._deliver(incoming)
        finally:
            closed.cancel()

    async def _deliver(self, incoming: AbstractIncomingMessage) -> None:
        message = _received(incoming)
        try:
            await self.handler(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("subscriber failed; the message is dropped",
                          extra={"bindings": self.bindings, "message_id": message.message_id})
        # Acknowledged whatever happened: the ack only paces the broker (prefetch); it is never redelivered.
        if not _stale(incoming):
            with contextlib.suppress(Exception):
                await incoming.ack()


def _outgoing(message: Message, headers: Mapping[str, str]) -> aio_pika.Message:
    return aio_pika.Message(
        message.body, message_id=message.message_id, type=message.routing_key, content_type="application/json",
        delivery_mode=DeliveryMode.PERSISTENT, headers=dict(headers), timestamp=datetime.now(UTC))


def _stale(incoming: AbstractIncomingMessage) -> bool:
    """Delivered on a channel that has since closed: the broker has put it back and delivers it again."""
    try:
        return incoming.channel.is_closed
    except aiormq.exceptions.ChannelInvalidStateError:
        return True


def _received(incoming: AbstractIncomingMessage) -> Message:
    headers = _string_headers(incoming.headers)
    headers[ATTEMPT_HEADER] = str(_attempt(headers))
    return Message(incoming.message_id or "", incoming.type or incoming.routing_key or "", incoming.body, headers)


def _dead_letter(queue: str, incoming: AbstractIncomingMessage) -> DeadLetter:
    message = _received(incoming)
    error = message.headers.get(ERROR_HEADER) or _broker_reason(incoming.headers)
    dead_at = _dead_at(message.headers.get(DEAD_AT_HEADER)) or incoming.timestamp
    if dead_at is not None and dead_at.tzinfo is None:
        dead_at = dead_at.replace(tzinfo=UTC)
    return DeadLetter(Message(message.message_id, message.routing_key, message.body,
                              {**_without(message.headers, ATTEMPT_HEADER, DEAD_AT_HEADER), ERROR_HEADER: error}),
                      queue, _attempt(message.headers), error, dead_at)


def _dead_at(stamp: str | None) -> datetime | None:
    """When our consumer dead-lettered a message, to the microsecond (AMQP's timestamp has whole seconds)."""
    if stamp is None:
        return None
    try:
        return datetime.fromisoformat(stamp)
    except ValueError:
        return None


def _broker_reason(headers: Mapping[str, Any]) -> str:
    """Why the broker itself dead-lettered a message (``x-death``), for the rare case it did."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
        return f"dead-lettered by the broker: {_text(deaths[0].get('reason'))}"
    return ""


def _attempt(headers: Mapping[str, str]) -> int:
    try:
        return max(1, int(headers.get(ATTEMPT_HEADER, "1")))
    except ValueError:
        return 1


def _without(headers: Mapping[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in names}


def _string_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, value in (headers or {}).items():
        if key.startswith(_BROKER_HEADERS):
            continue
        text = _text(value)
        if text is not None:
            result[key] = text
    return result


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str | int | float | bool):
        return str(value)
    return None


def _as_exception(result: object) -> BaseException | None:
    return result if isinstance(result, BaseException) else None
