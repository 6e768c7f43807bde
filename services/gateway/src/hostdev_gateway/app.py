"""Wiring: the DRA socket, then the registration socket; the device plugin sockets; the feeds."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hostdev_bus import NatsKv
from hostdev_devconfig import ResourceSpec, load_config
from hostdev_events import subjects
from hostdev_events.alloc import Hold
from hostdev_events.dp import ReconcileAllocations, Reconciled
from hostdev_events.inventory import Device
from hostdev_events.service import ServiceReady
from hostdev_gateway import dra, registration
from hostdev_gateway.batching import BatchLimits
from hostdev_gateway.claims import ClaimCalls
from hostdev_gateway.feed import Feed
from hostdev_gateway.health import HealthService
from hostdev_gateway.settings import Settings
from hostdev_gateway.sockets import serve_unix, stop_unix
from hostdev_runtime.runner import App, Route, ServiceContext

logger = logging.getLogger(__name__)

SERVICE = "gateway"


def socket_paths(settings: Settings) -> tuple[Path, Path]:
    """(DRA service socket, registration socket), per-instance when a pod UID is set."""
    driver = settings.driver_name
    suffix = f"-{settings.pod_uid}" if settings.pod_uid else ""
    service = Path(settings.plugins_dir) / driver / f"dra{suffix}.sock"
    reg = Path(settings.registry_dir) / f"{driver}{suffix}-reg.sock"
    return service, reg


def resources(settings: Settings) -> tuple[ResourceSpec, ...]:
    """The device plugin resources of the selection file; none when there is no file."""
    path = Path(settings.devices_config)
    if not path.exists():
        logger.info(
            "no device selection file; no device plugin resources", extra={"path": str(path)}
        )
        return ()
    return load_config(path).resources


async def _start_feed(ctx: ServiceContext, settings: Settings) -> Feed:
    feed = Feed(settings.node_name)
    # Both buckets at once: each open is a JetStream request (two on a first start).
    inventory, ledger = await asyncio.gather(
        NatsKv.open(ctx.js, subjects.INVENTORY_BUCKET, Device, ctx.settings.kv_replicas),
        NatsKv.open(ctx.js, subjects.LEDGER_BUCKET, Hold, ctx.settings.kv_replicas),
    )
    ctx.spawn(feed.follow_inventory(inventory))
    ctx.spawn(feed.follow_ledger(ledger))
    return feed


async def _start_dra(ctx: ServiceContext, settings: Settings, feed: Feed) -> None:
    service_path, reg_path = socket_paths(settings)
    health = HealthService(feed, settings.health_resend_seconds, settings.health_timeout_seconds)
    dra_server = dra.server(ClaimCalls(settings.node_name, ctx.bus, _batching(settings)), health)
    await serve_unix(dra_server, service_path)
    ctx.stack.push_async_callback(stop_unix, dra_server, service_path)
    # Only now may the kubelet learn about us: it calls the endpoint right after registering.
    servicer = registration.Registration(
        registration.DRA_PLUGIN_TYPE,
        settings.driver_name,
        str(service_path),
        registration.DRA_VERSIONS,
    )
    reg_server = registration.server(servicer)
    await serve_unix(reg_server, reg_path)
    ctx.stack.push_async_callback(stop_unix, reg_server, reg_path)
    ctx.readiness.add("sockets", lambda: service_path.exists() and reg_path.exists())


def _batching(settings: Settings) -> BatchLimits | None:
    if settings.claim_batch <= 0:
        return None
    return BatchLimits(
        max_claims=settings.claim_batch,
        hold=settings.claim_batch_hold_ms / 1000,
        in_flight=max(settings.claim_batch_in_flight, 1),
    )


async def _start_device_plugins(
    ctx: ServiceContext, settings: Settings, specs: tuple[ResourceSpec, ...], feed: Feed
) -> tuple[Route[Any], ...]:
    # Imported here: a node without device plugin resources never loads their gRPC code.
    from hostdev_gateway.deviceplugin import ResourcePlugin
    from hostdev_gateway.dp_restore import Restorer
    from hostdev_gateway.dp_sockets import DevicePlugins
    from hostdev_gateway.podresources import Reconciler

    node = settings.node_name
    reconciler = Reconciler(
        node, ctx.bus, Path(settings.pod_resources_socket), tuple(s.name for s in specs)
    )
    # Allocations pods still hold are rebuilt (after a reboot) before they count as healthy.
    restorer = Restorer(node, ctx.bus, feed, reconciler.in_use, specs)
    plugins = [
        ResourcePlugin(s, feed, ctx.bus, node, settings.dp_cdi, restorer.restoring) for s in specs
    ]
    sockets = DevicePlugins(
        Path(settings.device_plugins_dir),
        plugins,
        instance=settings.pod_uid,
        before_register=restorer.begin,
    )
    ctx.spawn(restorer.run(ctx.stopping, settings.pod_resources_seconds))
    ctx.spawn(sockets.run(ctx.stopping))
    ctx.spawn(reconciler.run(ctx.stopping, settings.pod_resources_seconds))

    async def reconcile_now(msg: ReconcileAllocations) -> Reconciled:
        return Reconciled(released=await reconciler.once())

    return (
        Route(subjects.dp_reconcile(node), ReconcileAllocations, reconcile_now),
        Route(
            subjects.service_ready(node),
            ServiceReady,
            restorer.on_service_ready,
            every_instance=True,
        ),
    )


def _return_startup_memory() -> None:
    """Give the kernel back what imports and gRPC's start-up freed (about 1-2 MiB of
    the C heap here); glibc keeps freed heap memory otherwise. Elsewhere a no-op."""
    gc.collect()
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return  # not glibc
    trim(0)


def app(settings: Settings) -> App:
    """The gateway app for the runner: it answers the kubelet, one reconcile subject, and
    follows service starts (a preparer start retries waiting device-plugin restores)."""

    async def start(ctx: ServiceContext) -> Sequence[Route[Any]]:
        feed = await _start_feed(ctx, settings)
        await _start_dra(ctx, settings, feed)
        specs = resources(settings)
        found: Sequence[Route[Any]] = ()
        if specs:
            found = await _start_device_plugins(ctx, settings, specs, feed)
        _return_startup_memory()
        return found

    return start
