"""The event bus: one protocol, a RabbitMQ transport and an in-process transport."""

from radcommon.messaging.bus import (
    Bus,
    DeadLetter,
    Handler,
    Message,
    PermanentFailure,
    RetryPolicy,
    Subscription,
    dead_letter_queue,
    retry_queue,
    topic_matches,
)

__all__ = ["Bus", "DeadLetter", "Handler", "Message", "PermanentFailure", "RetryPolicy",
           "Subscription", "dead_letter_queue", "retry_queue", "topic_matches"]
