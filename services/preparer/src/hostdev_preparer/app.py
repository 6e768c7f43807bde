"""Wiring: the API client, KV buckets, families and the inventory view, then the routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from hostdev_bus import Bus, BusError, CoalescingBus, KvStore, NatsKv, PrefixInMemory
from hostdev_devconfig import load_config
from hostdev_events import subjects
from hostdev_events.alloc import Hold
from hostdev_events.claims import PrepareClaims, UnprepareClaims
from hostdev_events.dp import (
    AllocateDevices,
    ListAllocations,
    ReleaseAllocations,
    RestoreAllocations,
)
from hostdev_events.inventory import Device, InventoryChanged
from hostdev_events.state import Checkpoint
from hostdev_families import Pyroute2Netlink, VfNetlink, build_families
from hostdev_kube import Kube
from hostdev_preparer import dp, dp_restore
from hostdev_preparer.claimwatch import ClaimCache, follow
from hostdev_preparer.flow import Deps
from hostdev_preparer.handlers import on_prepare, on_unprepare
from hostdev_preparer.inventory import InventoryView
from hostdev_preparer.locks import KeyedLocks
from hostdev_preparer.orphans import OrphanMetrics, Orphans, Timings
from hostdev_preparer.settings import Settings
from hostdev_runtime.clock import Clock, SystemClock
from hostdev_runtime.metrics import ClaimMetrics
from hostdev_runtime.runner import App, Route, ServiceContext
from hostdev_sysfs import FileWriter, HostRoot, SysfsWriter

logger = logging.getLogger(__name__)

SERVICE = "preparer"
# Start-up waits between attempts to read the node's checkpoints, doubling up to the most.
LOAD_RETRY_FIRST_SECONDS = 0.2
LOAD_RETRY_MAX_SECONDS = 5.0


def routes(node: str, deps: Deps, restored: dp_restore.RestoreMetrics) -> tuple[Route[Any], ...]:
    """Subjects this service answers or follows."""
    return (
        Route(subjects.claims_prepare(node), PrepareClaims, partial(on_prepare, deps=deps)),
        Route(subjects.claims_unprepare(node), UnprepareClaims, partial(on_unprepare, deps=deps)),
        Route(subjects.dp_allocate(node), AllocateDevices, partial(dp.on_allocate, deps=deps)),
        Route(subjects.dp_release(node), ReleaseAllocations, partial(dp.on_release, deps=deps)),
        Route(subjects.dp_list(node), ListAllocations, partial(dp.on_list, deps=deps)),
        Route(
            subjects.dp_restore(node),
            RestoreAllocations,
            partial(dp_restore.on_restore, deps=deps, metrics=restored),
        ),
        Route(
            subjects.inventory_changed(node),
            InventoryChanged,
            deps.inventory.on_changed,
            every_instance=True,
        ),
    )


def read_boot_id(path: Path) -> str:
    """This boot's ID; empty (never redo on boot grounds) when the kernel does not offer one."""
    try:
        return path.read_text().strip()
    except OSError:
        logger.warning(
            "no boot ID; claims are not redone after a reboot", extra={"path": str(path)}
        )
        return ""


def metadata_families(setting: str) -> frozenset[str] | None:
    """`all` (None), `none` (empty) or the listed families."""
    value = setting.strip().lower()
    if value == "all":
        return None
    if value in ("", "none"):
        return frozenset()
    return frozenset(f.strip() for f in value.split(",") if f.strip())


def app(
    settings: Settings,
    *,
    writer: SysfsWriter | None = None,
    netlink: VfNetlink | None = None,
    clock: Clock | None = None,
) -> App:
    """The preparer app for the runner.

    `writer` and `netlink` are where the kernel reacts, `clock` where time passes; a test
    kit passes fakes, the service's own entry point never does.
    """

    async def start(ctx: ServiceContext) -> Sequence[Route[Any]]:
        kube = await Kube.connect(settings.kube_api_url)
        ctx.stack.push_async_callback(kube.close)
        node = settings.node_name
        root = HostRoot(settings.host_root)
        families = build_families(
            load_config(Path(settings.devices_config)),
            root,
            writer or FileWriter(root),
            netlink or Pyroute2Netlink(),
        )
        cache = ClaimCache(driver=settings.driver_name, node=node)
        time = clock or SystemClock()
        # The buckets at once: each open is a JetStream request (two on a first start).
        stored, inventory, ledger = await asyncio.gather(
            NatsKv.open(ctx.js, subjects.CHECKPOINT_BUCKET, Checkpoint, ctx.settings.kv_replicas),
            NatsKv.open(ctx.js, subjects.INVENTORY_BUCKET, Device, ctx.settings.kv_replicas),
            NatsKv.open(ctx.js, subjects.LEDGER_BUCKET, Hold, ctx.settings.kv_replicas),
        )
        checkpoints = await _checkpoints(stored, settings, time)
        deps = Deps(
            node=node,
            driver=settings.driver_name,
            bus=_requests(ctx, settings),
            checkpoints=checkpoints,
            inventory=InventoryView(node, inventory),
            claims=kube,
            families=families,
            clock=time,
            locks=KeyedLocks(),
            metadata_families=metadata_families(settings.device_metadata),
            boot_id=read_boot_id(Path(settings.boot_id_file)),
            metrics=ClaimMetrics(ctx.metrics.registry),
            known_claims=cache if settings.claims_from_watch else None,
        )
        _watch_for_orphans(ctx, settings, kube, deps, cache, ledger)
        return routes(node, deps, dp_restore.RestoreMetrics(ctx.metrics.registry))

    return start


def _requests(ctx: ServiceContext, settings: Settings) -> Bus:
    """The bus for the claims' requests: concurrent ones to the allocator and the CDI
    writer coalesced into one message per subject, when the settings allow. Its hold is
    real time, as the requests' deadlines are (a test's clock moves only claims' waits)."""
    if not settings.request_batch:
        return ctx.bus
    node = settings.node_name
    coalesced = (
        subjects.alloc_reserve(node),
        subjects.alloc_release(node),
        subjects.cdi_write(node),
        subjects.cdi_remove(node),
    )
    return CoalescingBus(ctx.bus, coalesced)


async def _checkpoints(
    store: NatsKv[Checkpoint], settings: Settings, clock: Clock
) -> KvStore[Checkpoint]:
    """This node's checkpoints; read from memory when the settings allow (PrefixInMemory:
    a node runs one preparer, the records' only writer), loaded before any call is served."""
    if not settings.checkpoints_in_memory:
        return store
    remembered = PrefixInMemory(store, subjects.device_key_prefix(settings.node_name))
    await load_when_answered(remembered, clock)
    return remembered


async def load_when_answered(remembered: PrefixInMemory[Checkpoint], clock: Clock) -> None:
    """Load the node's checkpoints, asking again until JetStream answers.

    JetStream may not answer for a while at start (nats-server restarting with the node, a
    stream electing its leader): like NATS itself, a dependency to wait for, not a reason to
    exit and be restarted with the kubelet's growing back-off.
    """
    wait = LOAD_RETRY_FIRST_SECONDS
    while True:
        try:
            await remembered.load()
            return
        except BusError as err:
            logger.warning(
                "cannot read this node's checkpoints yet; asking again",
                extra={"error": str(err), "retry_seconds": wait},
            )
        await clock.sleep(wait)
        wait = min(wait * 2, LOAD_RETRY_MAX_SECONDS)


def _watch_for_orphans(
    ctx: ServiceContext,
    settings: Settings,
    kube: Kube,
    deps: Deps,
    cache: ClaimCache,
    ledger: NatsKv[Hold],
) -> None:
    """Follow the cluster's claims (for prepares to read too) and clean up what the kubelet
    forgot (see orphans)."""
    orphans = Orphans(
        deps=deps,
        ledger=ledger,
        cache=cache,
        timings=Timings(
            grace=settings.orphan_grace_seconds,
            stuck_preparing=settings.stuck_preparing_seconds,
            scan=settings.orphan_scan_seconds,
        ),
        metrics=OrphanMetrics(ctx.metrics.registry),
    )
    ctx.spawn(follow(cache, kube, deps.clock))
    ctx.spawn(orphans.run(ctx.stopping))
