"""The probe and metrics endpoints over real TCP, as the kubelet and Prometheus ask them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter

from hostdev_runtime import http
from hostdev_runtime.http import Readiness


class Node:
    """A service's endpoints on an ephemeral port, with a check the test turns on and off."""

    def __init__(self) -> None:
        self.nats_up = False
        self.readiness = Readiness()
        self.readiness.add("nats", lambda: self.nats_up)
        self.readiness.add("broken", self._broken)
        self.broken = False
        self.registry = CollectorRegistry()
        Counter("hostdev_test_things", "Things counted.", registry=self.registry).inc(3)
        self.port = 0

    def _broken(self) -> bool:
        if self.broken:
            raise RuntimeError("check failed")
        return True

    async def ask(self, request: bytes) -> tuple[str, dict[str, str], bytes]:
        """Send raw bytes; (status line, headers, body) of the answer, read to the close."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(request)
            await writer.drain()
            async with asyncio.timeout(10):
                raw = await reader.read()
        finally:
            writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        status, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        return status, headers, body

    async def get(self, path: str, method: str = "GET") -> tuple[str, dict[str, str], bytes]:
        return await self.ask(f"{method} {path} HTTP/1.1\r\nHost: pod\r\n\r\n".encode())


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    made = Node()
    endpoints = await http.serve(made.readiness, made.registry, 0)
    made.port = endpoints.server.sockets[0].getsockname()[1]
    try:
        yield made
    finally:
        await endpoints.cleanup()


async def test_liveness_answers_ok_whatever_readiness_says(node: Node) -> None:
    status, headers, body = await node.get("/healthz")
    assert (status, body) == ("HTTP/1.1 200 OK", b"ok\n")
    assert headers["content-length"] == "3"
    assert headers["connection"] == "close"


async def test_readiness_names_the_failing_checks_until_they_pass(node: Node) -> None:
    """A check that raises counts as failing; the answer follows the checks at each ask."""
    node.broken = True
    status, _, body = await node.get("/readyz")
    assert status == "HTTP/1.1 503 Service Unavailable"
    assert body == b"not ready: nats, broken\n"
    node.nats_up, node.broken = True, False
    assert await node.get("/readyz?verbose") == (
        "HTTP/1.1 200 OK",
        {"content-type": "text/plain; charset=utf-8", "content-length": "6", "connection": "close"},
        b"ready\n",
    )


async def test_metrics_are_the_registry_in_prometheus_text_format(node: Node) -> None:
    status, headers, body = await node.get("/metrics")
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == CONTENT_TYPE_LATEST
    assert b"hostdev_test_things_total 3.0\n" in body
    assert int(headers["content-length"]) == len(body)


async def test_head_answers_the_headers_without_the_body(node: Node) -> None:
    status, headers, body = await node.get("/healthz", method="HEAD")
    assert (status, headers["content-length"], body) == ("HTTP/1.1 200 OK", "3", b"")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /nowhere HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (b"POST /readyz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405 Method Not Allowed"),
        (b"GET /healthz\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"hello there\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (
            b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * (http.MAX_HEAD_BYTES + 1) + b"\r\n\r\n",
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
    ],
    ids=["unknown-path", "post", "no-version", "not-http", "head-too-large"],
)
async def test_a_request_it_cannot_serve_gets_a_typed_status_and_the_connection_closes(
    node: Node, request_bytes: bytes, status: str
) -> None:
    found, headers, _ = await node.ask(request_bytes)
    assert found == status
    assert headers["connection"] == "close"


async def test_a_client_that_never_finishes_its_request_is_dropped(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stuck client must not hold its connection: it is closed, unanswered, after the wait."""
    monkeypatch.setattr(http, "READ_SECONDS", 0.05)
    assert await node.ask(b"GET /healthz HTTP/1.1\r\n") == ("", {}, b"")
