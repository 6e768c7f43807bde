"""Wiring: build the ledger on its KV bucket and list the routes."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from prometheus_client import Gauge

from hostdev_allocator.handlers import Deps, on_release, on_reserve
from hostdev_allocator.ledger import Ledger
from hostdev_allocator.prefer import on_prefer
from hostdev_allocator.settings import Settings
from hostdev_bus import NatsKv
from hostdev_events import subjects
from hostdev_events.alloc import Hold, PreferDevices, ReleaseDevices, ReserveDevices
from hostdev_runtime.runner import App, Route, ServiceContext

SERVICE = "allocator"


def routes(node: str, deps: Deps) -> tuple[Route[Any], ...]:
    """Subjects this service answers."""
    return (
        Route(subjects.alloc_reserve(node), ReserveDevices, partial(on_reserve, deps=deps)),
        Route(subjects.alloc_release(node), ReleaseDevices, partial(on_release, deps=deps)),
        Route(subjects.alloc_prefer(node), PreferDevices, on_prefer),
    )


def app(settings: Settings) -> App:
    """The allocator app for the runner."""

    async def start(ctx: ServiceContext) -> Sequence[Route[Any]]:
        kv = await NatsKv.open(ctx.js, subjects.LEDGER_BUCKET, Hold, ctx.settings.kv_replicas)
        held = Gauge(
            "hostdev_devices_held",
            "Devices some claim or device-plugin container holds, by this allocator's count.",
            registry=ctx.metrics.registry,
        )
        return routes(settings.node_name, Deps(ledger=Ledger(settings.node_name, kv, held)))

    return start
