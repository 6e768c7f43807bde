"""An OTLP trace receiver over gRPC on loopback, to see the spans services export."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as pb_grpc


@dataclass(frozen=True, slots=True)
class ReceivedSpan:
    """One span as exported: ids, parent, name, its service, its attributes and the spans it
    links to as (trace ID, span ID)."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    links: tuple[tuple[str, str], ...] = ()


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


@dataclass
class OtlpReceiver(pb_grpc.TraceServiceServicer):
    """Collects every exported span; `wait_for` returns once a condition on them holds."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _server: grpc.aio.Server | None = None

    async def Export(
        self, request: pb.ExportTraceServiceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            service = next(
                (
                    _value(a.value)
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ),
                "",
            )
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        ReceivedSpan(
                            service=service,
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            links=tuple(
                                (link.trace_id.hex(), link.span_id.hex()) for link in span.links
                            ),
                        )
                    )
        async with self._changed:
            self._changed.notify_all()
        return pb.ExportTraceServiceResponse()

    async def start(self) -> str:
        """Listen on a free loopback port; returns the endpoint for OTEL_EXPORTER_OTLP_ENDPOINT."""
        self._server = grpc.aio.server()
        pb_grpc.add_TraceServiceServicer_to_server(self, self._server)  # type: ignore[no-untyped-call]
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            await self._server.stop(0)

    async def wait_for(self, condition: Callable[[list[ReceivedSpan]], bool]) -> list[ReceivedSpan]:
        """Wait (wrap in asyncio.timeout) until `condition(spans)` holds."""
        async with self._changed:
            await self._changed.wait_for(lambda: condition(self.spans))
        return list(self.spans)
