"""Discovery and ResourceSlice publication for 100, 1,000 and 10,000 host-path devices.

Discovery's own pieces (families, the KV inventory on nats-server, the slice publisher on
the API emulator) are wired as `hostdev_discovery.app` wires them and driven one scan at a
time in this process, so each scan is timed exactly and split into its three parts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from prometheus_client import CollectorRegistry

from bench.stack import DRIVER
from hostdev_bus import Bus, NatsBus, NatsKv
from hostdev_devconfig import load_config
from hostdev_discovery.health import HealthTracker
from hostdev_discovery.inventory import InventoryStore
from hostdev_discovery.publisher import SlicePublisher
from hostdev_discovery.scanner import Scanner
from hostdev_discovery.slices import SlicePlan
from hostdev_events import subjects
from hostdev_events.inventory import Device, InventoryChanged
from hostdev_families import Pyroute2Netlink, build_families
from hostdev_kube import Kube
from hostdev_runtime.clock import SystemClock
from hostdev_runtime.metrics import DeviceMetrics
from hostdev_sysfs import HostRoot, ReadOnlyWriter
from hostdev_testing.cluster import Cluster
from hostdev_testing.fakehost import FakeHost


class TimedStore(InventoryStore):
    """The inventory store, timing each publish (the KV writes)."""

    def __init__(self, node: str, kv: NatsKv[Device], bus: Bus) -> None:
        super().__init__(node, kv, bus)
        self.seconds = 0.0

    async def publish(self, devices: Sequence[Device]) -> InventoryChanged | None:
        started = time.perf_counter()
        try:
            return await super().publish(devices)
        finally:
            self.seconds = time.perf_counter() - started


class TimedPublisher(SlicePublisher):
    """The slice publisher, timing each reconcile and keeping its plan."""

    seconds = 0.0
    last: SlicePlan | None = None

    async def reconcile(self, devices: Sequence[Device]) -> SlicePlan:
        started = time.perf_counter()
        self.seconds = 0.0
        self.last = None
        try:
            self.last = await super().reconcile(devices)
            return self.last
        finally:
            self.seconds = time.perf_counter() - started


@dataclass(frozen=True, slots=True)
class Scan:
    """One timed scan: total, its parts, and what the API server saw change."""

    total_s: float
    inventory_s: float  # KV writes and the inventory.changed event
    slices_s: float  # list, plan and write ResourceSlices
    slices_written: int  # slices created, updated or deleted, counted on the server
    planned_writes: int  # what the publisher's plan said

    @property
    def scan_s(self) -> float:
        """Discovery proper: walking the host and checking health."""
        return max(self.total_s - self.inventory_s - self.slices_s, 0.0)

    def as_json(self) -> dict[str, Any]:
        return {
            "total_s": round(self.total_s, 4),
            "scan_s": round(self.scan_s, 4),
            "inventory_kv_s": round(self.inventory_s, 4),
            "slices_api_s": round(self.slices_s, 4),
            "slices_written": self.slices_written,
            "planned_writes": self.planned_writes,
        }


@dataclass(slots=True)
class SizeResult:
    devices: int
    slices: int = 0
    published_devices: int = 0
    first: Scan | None = None
    remove_one: Scan | None = None
    add_one: Scan | None = None
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "devices": self.devices,
            "slices": self.slices,
            "published_devices": self.published_devices,
            "first_publish": self.first.as_json() if self.first else None,
            "remove_one_device": self.remove_one.as_json() if self.remove_one else None,
            "add_one_device": self.add_one.as_json() if self.add_one else None,
        }


def _host(root: Path, count: int) -> FakeHost:
    host = FakeHost(root)
    folder = host.directory("/dev/bench")
    for i in range(count):
        (folder / f"n{i:05d}").write_bytes(b"")
    return host


def _versions(slices: list[dict[str, Any]]) -> dict[str, str]:
    return {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in slices}


def _written(before: dict[str, str], after: dict[str, str]) -> int:
    """Slices created, changed or deleted between two listings."""
    changed = sum(1 for name, rv in after.items() if before.get(name) != rv)
    return changed + sum(1 for name in before if name not in after)


async def _timed_scan(scanner: Scanner, store: TimedStore, cluster: Cluster) -> Scan:
    publisher = scanner.publisher
    assert isinstance(publisher, TimedPublisher)
    before = _versions(await cluster.slices())
    store.seconds = publisher.seconds = 0.0
    publisher.last = None
    started = time.perf_counter()
    await scanner.scan_once()
    total = time.perf_counter() - started
    after = _versions(await cluster.slices())
    plan = publisher.last
    planned = 0 if plan is None else len(plan.creates) + len(plan.updates) + len(plan.deletes)
    return Scan(total, store.seconds, publisher.seconds, _written(before, after), planned)


async def measure_size(nats_url: str, api_url: str, workdir: Path, count: int) -> SizeResult:
    """Publish `count` devices from scratch, then remove one device, then add it back."""
    node = f"bench-slices-{count}"
    host = _host(workdir / f"slices-{count}", count)
    config = host.write_config(workdir / f"slices-{count}.yaml", [{"path": "/dev/bench/n*"}])
    result = SizeResult(devices=count)
    nc = await nats.connect(nats_url)
    kube = await Kube.connect(api_url)
    try:
        async with Cluster(api_url, node, DRIVER) as cluster:
            await cluster.create_node()
            root = HostRoot(host.root)
            families = build_families(
                load_config(config), root, ReadOnlyWriter(), Pyroute2Netlink()
            )
            bus = NatsBus(nc)
            kv = await NatsKv.open(nc.jetstream(), subjects.INVENTORY_BUCKET, Device)
            store = TimedStore(node, kv, bus)
            await store.load()
            scanner = Scanner(
                families=families,
                store=store,
                publisher=TimedPublisher(kube, node, DRIVER),
                period=3600.0,
                wake=asyncio.Event(),
                health=HealthTracker(debounce_seconds=0.0, gone_seconds=0.0),
                bus=bus,
                node=node,
                clock=SystemClock(),
                metrics=DeviceMetrics(CollectorRegistry()),
            )
            result.first = await _timed_scan(scanner, store, cluster)
            listed = await cluster.slices()
            result.slices = len(listed)
            result.published_devices = sum(len(s["spec"].get("devices") or ()) for s in listed)
            victim = f"/dev/bench/n{count // 2:05d}"
            host.remove(victim)
            result.remove_one = await _timed_scan(scanner, store, cluster)
            host.device_node(victim)
            result.add_one = await _timed_scan(scanner, store, cluster)
    finally:
        await kube.close()
        await nc.close()
    return result
