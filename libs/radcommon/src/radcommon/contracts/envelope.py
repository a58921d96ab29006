"""The base of every domain event that crosses a service boundary."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Event(BaseModel):
    """A fact one service tells the others.

    ``event_type`` names the fact and its version (``study.received.v1``); ``routing_key`` adds the
    producer (``dicom-ingest.study.received.v1``). ``trace_parent`` carries the W3C trace context of
    the request that caused it. New fields are optional; anything else is a new version.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    routing_key: ClassVar[str]
    event_type: ClassVar[str]
    aggregate: ClassVar[str]
    """Name of the field that identifies the aggregate; the relay keeps order per aggregate."""

    event_id: UUID = Field(default_factory=uuid4)
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    organization_id: UUID
    trace_parent: str | None = Field(default=None, max_length=55)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "routing_key" in cls.__dict__:
            producer, _, event_type = cls.routing_key.partition(".")
            if not producer or not event_type.rsplit(".", 1)[-1].startswith("v"):
                raise ValueError(f"{cls.__name__}: routing key must be <producer>.<aggregate>.<event>.v<N>")
            cls.event_type = event_type

    def aggregate_id(self) -> str:
        return str(getattr(self, self.aggregate))
