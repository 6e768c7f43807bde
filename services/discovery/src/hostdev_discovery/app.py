"""Wiring: families, the KV inventory, the slice publisher and the scan loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from hostdev_bus import NatsKv
from hostdev_devconfig import load_config
from hostdev_discovery.fallback import SharedFallback
from hostdev_discovery.handlers import on_get_inventory
from hostdev_discovery.health import HealthTracker
from hostdev_discovery.inventory import InventoryStore
from hostdev_discovery.not_offered import NotOfferedLog
from hostdev_discovery.publisher import SlicePublisher
from hostdev_discovery.scanner import Scanner
from hostdev_discovery.settings import Settings
from hostdev_events import subjects
from hostdev_events.inventory import Device, GetInventory
from hostdev_families import Pyroute2Netlink, build_families
from hostdev_kube import Kube
from hostdev_runtime.clock import SystemClock
from hostdev_runtime.metrics import DeviceMetrics, SharedFallbackMetrics
from hostdev_runtime.runner import App, Route, ServiceContext
from hostdev_sysfs import HostRoot, ReadOnlyWriter

SERVICE = "discovery"


def app(settings: Settings) -> App:
    """The discovery app for the runner."""

    async def start(ctx: ServiceContext) -> Sequence[Route[Any]]:
        node = settings.node_name
        root = HostRoot(settings.host_root)
        # Discovery only reads: its writer refuses, and it never touches netlink.
        families = build_families(
            load_config(Path(settings.devices_config)), root, ReadOnlyWriter(), Pyroute2Netlink()
        )
        kv = await NatsKv.open(ctx.js, subjects.INVENTORY_BUCKET, Device, ctx.settings.kv_replicas)
        store = InventoryStore(node, kv, ctx.bus)
        await store.load()
        publisher = None
        wake = asyncio.Event()
        if settings.publish_slices:
            kube = await Kube.connect(settings.kube_api_url)
            ctx.stack.push_async_callback(kube.close)
            taint = settings.taint_effect if settings.taint_unhealthy else None
            shared = SharedFallback(
                settings.shared_copies, SharedFallbackMetrics(ctx.metrics.registry), wake
            )
            publisher = SlicePublisher(kube, node, settings.driver_name, taint, shared)
            # Asked before the first publish, so the first slices are already right.
            await shared.probe(kube, publisher.pool)
            ctx.spawn(shared.run(kube, publisher.pool, settings.shared_probe_seconds, ctx.stopping))
        not_offered = NotOfferedLog()
        scanner = Scanner(
            families=families,
            store=store,
            publisher=publisher,
            period=settings.scan_seconds,
            wake=wake,
            health=HealthTracker(
                settings.debounce_seconds, settings.gone_seconds, settings.aer_quiet_seconds
            ),
            bus=ctx.bus,
            node=node,
            clock=SystemClock(),
            metrics=DeviceMetrics(ctx.metrics.registry),
            not_offered=not_offered,
        )
        # The first scan finishes before the service reports ready, so the inventory
        # and the slices exist by then; later scans run in the background.
        ctx.spawn(scanner.run(ctx.stopping, await scanner.scan_safely()))
        if publisher is not None:
            ctx.spawn(publisher.watch(wake, ctx.stopping))
        return (
            Route(
                subjects.inventory_get(node),
                GetInventory,
                partial(on_get_inventory, store=store, not_offered=not_offered),
            ),
        )

    return start
