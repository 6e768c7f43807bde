"""W3C trace context carried in NATS message headers."""

from __future__ import annotations

from opentelemetry import context, propagate


def inject(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Headers carrying the current span's context (traceparent, tracestate)."""
    carrier: dict[str, str] = dict(headers) if headers else {}
    propagate.inject(carrier)
    return carrier


def extract(headers: dict[str, str] | None) -> context.Context:
    """The context a message's headers carry, or an empty one."""
    return propagate.extract(headers or {})
