"""What a transport promises, whichever it is.

Both transports keep the same semantics, so a service does not know which one it runs on:

- ``publish`` returns only once the transport holds every message durably (publisher confirms);
  a message that no queue is bound for is kept in the ``telerad.unrouted`` queue, never dropped.
- a consuming service owns one durable queue, bound to the routing keys it reads (topic patterns);
- a message is acknowledged only after its handler returned; a consumer that dies before that gets
  it again (so handlers are idempotent through the inbox);
- a handler that raises is retried with exponential backoff; after ``RetryPolicy.attempts`` tries,
  or at once for :class:`PermanentFailure`, the message goes to ``<queue>.dead``, where an operator
  lists and replays it.

``subscribe`` is the other way to receive, for live views only (the gateway's push to browsers):

- every subscription, in every process, gets its own copy of each matching message published after
  ``subscribe`` returned (broadcast, where ``consume`` shares a queue's messages among its consumers);
- delivery is at most once: nothing is retried, dead-lettered or redelivered, a handler that raises
  loses that message, a subscriber more than :data:`SUBSCRIPTION_BACKLOG` messages behind loses the
  oldest, and what is published while a subscription is being re-created after a connection loss is
  lost (``on_resubscribed`` is then called, so the subscriber can catch up from the source of truth);
- messages reach one subscription in publish order, one at a time;
- a message that only subscriptions matched counts as routed: it is not kept in ``telerad.unrouted``.

Work that must happen (state changes, e-mails, audit) uses ``consume``, never ``subscribe``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Protocol

UNROUTED_QUEUE = "telerad.unrouted"
ATTEMPT_HEADER = "x-telerad-attempt"
ERROR_HEADER = "x-telerad-error"
#: Deliveries lost with their consumer (a crash, a cut connection) before a message is dead-lettered,
#: so one that kills every process handling it cannot loop forever.
REDELIVERY_LIMIT = 10  # dead-lettered when lost a time more than this (RabbitMQ x-delivery-limit)
#: Messages a subscription holds for a subscriber that is behind; past that, the oldest are dropped.
SUBSCRIPTION_BACKLOG = 10_000


@dataclass(frozen=True)
class Message:
    message_id: str
    routing_key: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeadLetter:
    message: Message
    queue: str
    attempts: int
    error: str
    dead_at: datetime | None = None


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 1.0
    factor: float = 2.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return self.base_delay * self.factor ** (attempt - 1)


class PermanentFailure(Exception):
    """Raised by a handler for a message that no retry can fix (it cannot even be decoded)."""


Handler = Callable[[Message], Awaitable[None]]
Resubscribed = Callable[[], Awaitable[None]]


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dead"


def retry_queue(queue: str, attempt: int) -> str:
    return f"{queue}.retry.{attempt}"


class Subscription(Protocol):
    async def close(self) -> None:
        """Stop delivering; idempotent, and harmless once the bus itself is closed."""
        ...


class Bus(Protocol):
    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    async def publish(self, messages: Sequence[Message]) -> None: ...

    async def declare(self, queue: str, bindings: Sequence[str]) -> None:
        """Create the queue (and its retry and dead-letter queues) and bind it, idempotently."""
        ...

    async def consume(self, queue: str, bindings: Sequence[str], handler: Handler) -> None:
        """Declare, then deliver the queue's messages to ``handler`` until :meth:`close`."""
        ...

    async def subscribe(self, bindings: Sequence[str], handler: Handler, *,
                        on_resubscribed: Resubscribed | None = None) -> Subscription:
        """Deliver to ``handler`` every message matching ``bindings`` (topic patterns) published from
        now on, in this process as in every other that subscribed: at most once, for live views only
        (see the module's docstring). Returns once the subscription is in place."""
        ...

    async def dead_letters(self, queue: str) -> list[DeadLetter]: ...

    async def replay_dead_letters(self, queue: str, message_ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all, or those named) back on ``queue`` with a fresh retry budget."""
        ...


@lru_cache(maxsize=1024)
def _topic_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for word in pattern.split("."):
        if word == "#":
            parts.append(r"(?:[^.]+(?:\.[^.]+)*)?")
        elif word == "*":
            parts.append(r"[^.]+")
        else:
            parts.append(re.escape(word))
    regex = r"\.".join(parts)
    # "#" may also swallow its neighbouring dot, as in AMQP ("a.#" matches "a").
    regex = regex.replace(r"\.(?:[^.]+(?:\.[^.]+)*)?", r"(?:\.[^.]+)*").replace(
        r"(?:[^.]+(?:\.[^.]+)*)?\.", r"(?:[^.]+\.)*")
    return re.compile(f"^{regex}$")


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: ``*`` is exactly one word, ``#`` is zero or more words."""
    return _topic_regex(pattern).match(routing_key) is not None
