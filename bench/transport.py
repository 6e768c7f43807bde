"""The transports alone: what one hop costs on this machine, with no driver code on it.

A host-path prepare crosses, one after the other: the kubelet's gRPC call to the gateway,
the gateway's NATS request to the preparer, the preparer's request to the allocator and the
allocator's KV write (the CDI writer's request and the checkpoint write go alongside).
Timing each of those bare, between two Python processes as the services are, gives the
least the full stack can take here whatever the services do: the `in series` line.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import nats
from nats.js.api import KeyValueConfig, StorageType

from bench.stats import Summary, summarize

# A request the size of a PrepareClaims of one claim, roughly.
PAYLOAD = b"x" * 300
_ECHO_SUBJECT = "bench.transport.echo"
_GRPC_METHOD = "/bench.Echo/Echo"

# The echo peers, each a Python process of its own as every service is.
_NATS_ECHO = f"""
import asyncio, sys, nats
async def main():
    nc = await nats.connect(sys.argv[1])
    async def echo(msg):
        await msg.respond(msg.data)
    await nc.subscribe({_ECHO_SUBJECT!r}, cb=echo)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

_GRPC_ECHO = """
import asyncio, sys, grpc
async def echo(request, context):
    return request
async def main():
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port("unix://" + sys.argv[1])
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()
asyncio.run(main())
"""


@dataclass(frozen=True, slots=True)
class TransportResult:
    """Round trips in ms: NATS request/reply, a JetStream KV update, a gRPC unary call."""

    nats: Summary
    kv_update: Summary
    grpc: Summary

    @property
    def in_series_ms(self) -> float:
        """One gRPC call, two NATS requests and one KV write, at their p50s."""
        return self.grpc.p50 + 2 * self.nats.p50 + self.kv_update.p50


async def _peer(code: str, arg: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, arg, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        line = await proc.stdout.readline()
    if line.strip() != b"ready":
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"echo peer did not start: {line!r}")
    return proc


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
    await proc.wait()


async def _timed(count: int, call: object) -> Summary:
    assert callable(call)
    for _ in range(min(50, count)):  # warm-up
        await call()
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        seconds.append(time.perf_counter() - started)
    return summarize(seconds)


async def measure(nats_url: str, workdir: Path, count: int) -> TransportResult:
    """`count` sequential round trips of each kind."""
    workdir.mkdir(parents=True, exist_ok=True)
    socket = workdir / "echo.sock"
    nats_peer = await _peer(_NATS_ECHO, nats_url)
    grpc_peer = await _peer(_GRPC_ECHO, str(socket))
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        bucket = f"bench-transport-{uuid.uuid4().hex[:8]}"
        kv = await js.create_key_value(
            KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE)
        )
        revision = await kv.create("node.entry", PAYLOAD)

        async def request() -> None:
            await nc.request(_ECHO_SUBJECT, PAYLOAD, timeout=5)

        async def update() -> None:
            nonlocal revision
            revision = await kv.update("node.entry", PAYLOAD, last=revision)

        nats_rtt = await _timed(count, request)
        kv_rtt = await _timed(count, update)
        await js.delete_key_value(bucket)
        async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
            unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                _GRPC_METHOD
            )

            async def call() -> None:
                await unary(PAYLOAD, timeout=5)

            grpc_rtt = await _timed(count, call)
    finally:
        await nc.close()
        await _stop(nats_peer)
        await _stop(grpc_peer)
    return TransportResult(nats_rtt, kv_rtt, grpc_rtt)


def table(result: TransportResult, prepare_p50_ms: float | None) -> str:
    """The bare round trips, the least a prepare takes here, and the stack's p50 beside it."""
    from bench.stats import table as aligned

    rows: list[list[object]] = [
        ["NATS request/reply, two Python processes", result.nats.p50, result.nats.p99],
        ["JetStream KV update (compare-and-set)", result.kv_update.p50, result.kv_update.p99],
        ["gRPC unary call over a unix socket", result.grpc.p50, result.grpc.p99],
        ["in series: 1 gRPC + 2 NATS + 1 KV (p50s)", result.in_series_ms, ""],
    ]
    if prepare_p50_ms is not None:
        rows.append(["full-stack prepare, 1 caller", prepare_p50_ms, ""])
    return aligned(
        "Transports alone: sequential round trips, no driver code (ms)",
        ("round trip", "p50", "p99"),
        rows,
    )


def as_json(result: TransportResult) -> dict[str, object]:
    return {
        "nats_request": result.nats.as_json(),
        "kv_update": result.kv_update.as_json(),
        "grpc_unary": result.grpc.as_json(),
        "in_series_p50_ms": round(result.in_series_ms, 4),
    }
