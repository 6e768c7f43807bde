"""Readiness follows the NATS connection: not ready while it is down, ready again after, no restart."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path

import aiohttp

from hostdev_testing.nats import NatsServer
from hostdev_testing.services import MODULES, NodeConfig, running_services


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _wait_status(http: aiohttp.ClientSession, url: str, status: int) -> None:
    """Ask until the endpoint answers `status`; the probe is the only way to observe it."""
    async with asyncio.timeout(20):
        while True:
            async with http.get(url) as response:
                if response.status == status:
                    return
            await asyncio.sleep(0.05)


async def test_readiness_drops_without_nats_and_returns_without_restart(
    node_config: NodeConfig, short_dir: Path
) -> None:
    """Stopping NATS turns every service's /readyz to 503 while /healthz stays 200; starting it
    again on the same port turns /readyz back to 200 in the same processes."""
    server = NatsServer(short_dir / "own-nats")
    port = _free_port()
    try:
        url = server.start(port=port)
        config = dataclasses.replace(node_config, nats_url=url)
        async with running_services(config) as services:
            ports = {name: _free_port() for name in MODULES}
            for name, http_port in ports.items():
                services.per_service_env[name] = {"HOSTDEV_HTTP_PORT": str(http_port)}
            await services.start(processes=True)
            pids = {n: r.proc.pid for n, r in services.running.items() if r.proc is not None}
            async with aiohttp.ClientSession() as http:
                for http_port in ports.values():
                    await _wait_status(http, f"http://127.0.0.1:{http_port}/readyz", 200)
                server.stop()
                for http_port in ports.values():
                    await _wait_status(http, f"http://127.0.0.1:{http_port}/readyz", 503)
                    async with http.get(f"http://127.0.0.1:{http_port}/healthz") as alive:
                        assert alive.status == 200
                server.start(port=port)
                for http_port in ports.values():
                    await _wait_status(http, f"http://127.0.0.1:{http_port}/readyz", 200)
            running = {n: r.proc.pid for n, r in services.running.items() if r.proc is not None}
            assert running == pids
            assert all(
                r.proc is not None and r.proc.returncode is None for r in services.running.values()
            )
    finally:
        server.stop()
