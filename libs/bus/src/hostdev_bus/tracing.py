"""W3C trace context carried in NATS message headers and in stored records."""

from __future__ import annotations

from opentelemetry import context, propagate, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_W3C = TraceContextTextMapPropagator()
_TRACEPARENT = "traceparent"


def inject(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Headers carrying the current span's context (traceparent, tracestate)."""
    carrier: dict[str, str] = dict(headers) if headers else {}
    propagate.inject(carrier)
    return carrier


def extract(headers: dict[str, str] | None) -> context.Context:
    """The context a message's headers carry, or an empty one."""
    return propagate.extract(headers or {})


def traceparent() -> str:
    """The current span as a W3C `traceparent`, to keep in a record (a checkpoint, a device)
    and continue or link to later; empty when no span is being recorded (tracing off)."""
    if not trace.get_current_span().is_recording():
        return ""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get(_TRACEPARENT, "")


def stored_context(value: str) -> context.Context | None:
    """A context whose parent is the span a stored `traceparent` names; None if there is none."""
    if not value:
        return None
    found = _W3C.extract({_TRACEPARENT: value})
    return found if trace.get_current_span(found).get_span_context().is_valid else None


def stored_span(value: str) -> trace.SpanContext | None:
    """The span a stored `traceparent` names, to link to; None if there is none."""
    found = stored_context(value)
    return None if found is None else trace.get_current_span(found).get_span_context()
