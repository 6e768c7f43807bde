"""The HTTP side of every service: /healthz (alive), /readyz (can serve), /metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


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


def application(readiness: Readiness, registry: CollectorRegistry) -> web.Application:
    """The aiohttp app with the three endpoints."""

    async def healthz(request: web.Request) -> web.Response:
        # Answering at all shows the event loop runs; that is what liveness asks.
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        failed = readiness.failing()
        if failed:
            return web.Response(status=503, text="not ready: " + ", ".join(failed) + "\n")
        return web.Response(text="ready\n")

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(readiness: Readiness, registry: CollectorRegistry, port: int) -> web.AppRunner:
    """Listen on every address (the kubelet probes the pod IP) at `port`."""
    runner = web.AppRunner(application(readiness, registry), access_log=None)
    await runner.setup()
    # Every address: the kubelet probes the pod IP, Prometheus scrapes it.
    await web.TCPSite(runner, host="0.0.0.0", port=port).start()
    return runner
