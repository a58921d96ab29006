"""Bus messages to a service's event handlers, exactly once in effect.

The consumer decodes the message into its contract model, opens a unit of work, records the
event in the inbox, runs the handlers and commits — all or nothing. The transport acknowledges
only after that commit; a message that cannot be decoded goes straight to the dead-letter queue.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from pydantic import ValidationError

from radcommon.contracts import Event, UnknownEventType, parse_event
from radcommon.inbox import first_delivery
from radcommon.messaging import Message, PermanentFailure
from radcommon.telemetry import extract_context, tracer
from radcommon.uow import SqlUnitOfWork

log = logging.getLogger(__name__)

EventHandler = Callable[[Any, Any], Awaitable[None]]


class EventConsumer:
    def __init__(self, queue: str, handlers: Mapping[type[Event], Sequence[EventHandler]],
                 uow_factory: Callable[[], SqlUnitOfWork]) -> None:
        self.queue = queue
        self.handlers = handlers
        self.uow_factory = uow_factory

    @property
    def bindings(self) -> list[str]:
        return [model.routing_key for model in self.handlers]

    async def __call__(self, message: Message) -> None:
        try:
            event = parse_event(message.routing_key, message.body)
        except (UnknownEventType, ValidationError, ValueError) as error:
            raise PermanentFailure(f"undecodable {message.routing_key}: {error}") from error
        context = extract_context(message.headers)
        with tracer(__name__).start_as_current_span(
            f"{self.queue} consume {message.routing_key}", context=context, kind=trace.SpanKind.CONSUMER,
        ):
            async with self.uow_factory() as uow:
                if not await first_delivery(uow.session, self.queue, str(event.event_id), message.routing_key):
                    log.info("duplicate event dropped", extra={"event_id": str(event.event_id), "queue": self.queue})
                    return
                for handler in self.handlers[type(event)]:
                    await handler(event, uow)
                await uow.commit()
