"""The event catalogue: every event model, and the registry from routing key to model."""

from __future__ import annotations

from radcommon.contracts.dicom_ingest import PriorityValues, StudyReceivedV1, StudyUpdatedV1
from radcommon.contracts.envelope import Event

EVENTS: tuple[type[Event], ...] = (StudyReceivedV1, StudyUpdatedV1)
REGISTRY: dict[str, type[Event]] = {model.routing_key: model for model in EVENTS}


class UnknownEventType(LookupError):
    pass


def parse_event(routing_key: str, body: bytes | str) -> Event:
    """Decode a message body into the model its routing key names."""
    try:
        model = REGISTRY[routing_key]
    except KeyError:
        raise UnknownEventType(routing_key) from None
    return model.model_validate_json(body)


__all__ = ["EVENTS", "REGISTRY", "Event", "PriorityValues", "StudyReceivedV1", "StudyUpdatedV1",
           "UnknownEventType", "parse_event"]
