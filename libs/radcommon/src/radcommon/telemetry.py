"""OpenTelemetry: one tracer provider per process, W3C trace context over HTTP and AMQP headers."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider

_provider: TracerProvider | None = None


def setup_tracing(service_name: str) -> None:
    """Install the SDK tracer provider once; exporters are configured by OTEL_* variables later."""
    global _provider
    if _provider is None:
        from opentelemetry.sdk.resources import Resource

        _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        trace.set_tracer_provider(_provider)


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def extract_context(headers: Mapping[str, str]) -> Context:
    return propagate.extract(dict(headers))


def current_trace_id() -> str | None:
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None
