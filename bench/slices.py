"""Discovery and ResourceSlice publication for 100, 1,000 and 10,000 host-path devices.

Discovery's own pieces (families, the KV inventory on nats-server, the slice publisher on
the API emulator) are wired as `hostdev_discovery.app` wires them and driven one scan at a
time in this process, so each scan is timed exactly and split into its three parts.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from prometheus_client import CollectorRegistry

from bench.cpu import process_cpu_s
from bench.stack import DRIVER
from hostdev_bus import Bus, NatsBus, NatsKv
from hostdev_devconfig import load_config
from hostdev_discovery.health import HealthTracker
from hostdev_discovery.inventory import InventoryStore
from hostdev_discovery.publisher import SlicePublisher
from hostdev_discovery.scanner import Scanner
from hostdev_events import subjects
from hostdev_events.inventory import Device, InventoryChanged
from hostdev_families import Pyroute2Netlink, build_families
from hostdev_families.slices import SlicePlan
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
    # CPU seconds during the scan: this process (discovery's code, the driver's work), the
    # API emulator and nats-server; None where the process could not be read.
    cpu_s: dict[str, float | None] = field(default_factory=dict)

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
            "cpu_s": {k: None if v is None else round(v, 4) for k, v in self.cpu_s.items()},
        }


@dataclass(slots=True)
class SizeResult:
    devices: int
    validating: bool = True  # whether the API emulator checked slices against the schemas
    slices: int = 0
    published_devices: int = 0
    first: Scan | None = None
    remove_one: Scan | None = None
    add_one: Scan | None = None
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "devices": self.devices,
            "emulator_validates_schemas": self.validating,
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


def _cpu(pids: dict[str, int]) -> dict[str, float | None]:
    return {name: process_cpu_s(pid) for name, pid in pids.items()}


def _spent(
    before: dict[str, float | None], after: dict[str, float | None]
) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, start in before.items():
        end = after.get(name)
        out[name] = None if start is None or end is None else end - start
    return out


async def _timed_scan(
    scanner: Scanner, store: TimedStore, cluster: Cluster, pids: dict[str, int]
) -> Scan:
    publisher = scanner.publisher
    assert isinstance(publisher, TimedPublisher)
    before = _versions(await cluster.slices())
    store.seconds = publisher.seconds = 0.0
    publisher.last = None
    cpu_before = _cpu(pids)
    started = time.perf_counter()
    await scanner.scan_once()
    total = time.perf_counter() - started
    cpu = _spent(cpu_before, _cpu(pids))
    after = _versions(await cluster.slices())
    plan = publisher.last
    planned = 0 if plan is None else len(plan.creates) + len(plan.updates) + len(plan.deletes)
    return Scan(total, store.seconds, publisher.seconds, _written(before, after), planned, cpu)


async def measure_size(
    nats_url: str,
    api_url: str,
    workdir: Path,
    count: int,
    pids: dict[str, int] | None = None,
    *,
    validating: bool = True,
) -> SizeResult:
    """Publish `count` devices from scratch, then remove one device, then add it back.

    `pids` (the API emulator, nats-server) have their CPU time metered with this process's
    over each scan; `validating` says whether that emulator checks objects against the
    official schemas (recorded, and part of the node name so both runs can share NATS).
    """
    node = f"bench-slices-{count}" + ("" if validating else "-noschema")
    tag = f"{count}" + ("" if validating else "-noschema")
    host = _host(workdir / f"slices-{tag}", count)
    config = host.write_config(workdir / f"slices-{tag}.yaml", [{"path": "/dev/bench/n*"}])
    result = SizeResult(devices=count, validating=validating)
    metered = {"driver (this process)": os.getpid(), **(pids or {})}
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
            result.first = await _timed_scan(scanner, store, cluster, metered)
            listed = await cluster.slices()
            result.slices = len(listed)
            result.published_devices = sum(len(s["spec"].get("devices") or ()) for s in listed)
            victim = f"/dev/bench/n{count // 2:05d}"
            host.remove(victim)
            result.remove_one = await _timed_scan(scanner, store, cluster, metered)
            host.device_node(victim)
            result.add_one = await _timed_scan(scanner, store, cluster, metered)
    finally:
        await kube.close()
        await nc.close()
    return result
