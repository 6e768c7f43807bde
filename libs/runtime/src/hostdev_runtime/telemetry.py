"""OpenTelemetry set-up and the project's span attribute keys, defined once."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace

ATTR_CLAIM_UID = "dra.claim.uid"
ATTR_CLAIM_NAME = "dra.claim.name"
ATTR_CLAIM_NAMESPACE = "dra.claim.namespace"
ATTR_DEVICE = "dra.device.name"
ATTR_DEVICES = "dra.device.names"
ATTR_FAMILY = "dra.device.family"
ATTR_NODE = "dra.node"
ATTR_MESSAGING_SYSTEM = "messaging.system"
ATTR_MESSAGING_DESTINATION = "messaging.destination.name"
ATTR_MESSAGING_BATCH = "messaging.batch.message_count"

_EXPORT_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


def tracing_wanted(env: Mapping[str, str]) -> bool:
    """Export spans only when the standard OTEL_* variables ask for it."""
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").lower()
    if exporter == "none":
        return False
    return exporter in ("otlp", "console") or any(env.get(v) for v in _EXPORT_VARIABLES)


def setup_tracing(service: str, env: Mapping[str, str]) -> bool:
    """Install an exporting TracerProvider when asked; otherwise leave the no-op API tracer.

    Returns whether tracing is on. Imports the SDK lazily so a process with tracing
    off never loads it.
    """
    if not tracing_wanted(env):
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter: SpanExporter
    if env.get("OTEL_TRACES_EXPORTER", "").lower() == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True


def shutdown_tracing() -> None:
    """Flush and stop the exporter, if one was installed."""
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if callable(shutdown):
        shutdown()
