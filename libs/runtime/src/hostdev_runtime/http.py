"""The HTTP side of every service: /healthz (alive), /readyz (can serve), /metrics.

Three GET endpoints for the kubelet's probes and Prometheus, served by asyncio's own
stream server, one request per connection: a web framework's server side cost each
service about 10 MiB of resident memory and a fifth of a second of every start, for three
fixed answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

# A client that has not sent its whole request head by then is dropped (a slow or stuck one
# must not hold a connection open for ever).
READ_SECONDS = 10.0
# The largest request head (request line and headers) read; a probe's is a few hundred bytes.
MAX_HEAD_BYTES = 16 * 1024
TEXT = "text/plain; charset=utf-8"
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


@dataclass(slots=True)
class Readiness:
    """Named checks; the service is ready when every one passes."""

    checks: dict[str, Callable[[], bool]] = field(default_factory=dict)

    def add(self, name: str, check: Callable[[], bool]) -> None:
        """Register a check, e.g. "nats" -> is the connection up."""
        self.checks[name] = check

    def failing(self) -> list[str]:
        """Names of the checks that do not pass now."""
        failed = []
        for name, check in self.checks.items():
            try:
                ok = check()
            except Exception:
                ok = False
            if not ok:
                failed.append(name)
        return failed


@dataclass(frozen=True, slots=True)
class Answer:
    """One response: status, body and its content type."""

    status: int
    body: bytes
    content_type: str = TEXT


def answer(readiness: Readiness, registry: CollectorRegistry, method: str, target: str) -> Answer:
    """What the endpoint `target` answers to `method`."""
    path = target.split("?", 1)[0]
    if path not in ("/healthz", "/readyz", "/metrics"):
        return Answer(404, b"not found\n")
    if method not in ("GET", "HEAD"):
        return Answer(405, b"only GET and HEAD\n")
    if path == "/healthz":
        # Answering at all shows the event loop runs; that is what liveness asks.
        return Answer(200, b"ok\n")
    if path == "/readyz":
        failed = readiness.failing()
        if failed:
            return Answer(503, ("not ready: " + ", ".join(failed) + "\n").encode())
        return Answer(200, b"ready\n")
    return Answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)


def encode(found: Answer, *, head_only: bool = False) -> bytes:
    """The HTTP/1.1 response; the connection closes after it."""
    head = (
        f"HTTP/1.1 {found.status} {REASONS[found.status]}\r\n"
        f"Content-Type: {found.content_type}\r\n"
        f"Content-Length: {len(found.body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")
    return head if head_only else head + found.body


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str] | Answer:
    """(method, target) of the request, or the error to answer it with."""
    try:
        async with asyncio.timeout(READ_SECONDS):
            head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        return Answer(431, b"request head too large\n")
    parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return Answer(400, b"not an HTTP/1.x request line\n")
    return parts[0], parts[1]


@dataclass(slots=True)
class Endpoints:
    """The listening server; `cleanup` stops it."""

    server: asyncio.Server

    async def cleanup(self) -> None:
        """Stop listening; connections in flight end with their one answer."""
        self.server.close()
        await self.server.wait_closed()


async def serve(readiness: Readiness, registry: CollectorRegistry, port: int) -> Endpoints:
    """Listen on every address (the kubelet probes the pod IP) at `port`."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await _read_request(reader)
            if isinstance(request, Answer):
                writer.write(encode(request))
            else:
                method, target = request
                found = answer(readiness, registry, method, target)
                writer.write(encode(found, head_only=method == "HEAD"))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away, or never finished its request: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # Every address: the kubelet probes the pod IP, Prometheus scrapes it.
    server = await asyncio.start_server(
        on_connection, host="0.0.0.0", port=port, limit=MAX_HEAD_BYTES
    )
    return Endpoints(server)
