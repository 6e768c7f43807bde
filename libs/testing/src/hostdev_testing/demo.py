"""The demo: one simulated node with NATS, the API emulator, the five services and a kubelet.

Run it with `./dev demo`. The services run as separate processes (the preparer with
the fake kernel behind it). A simulated kubelet registers the driver exactly as the
kubelet does, then prepares and unprepares one claim per device family through the
DRA socket, and allocates through the classic device plugin API. It prints what
happened, stops everything it started and exits 0 (1 if anything failed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hostdev_testing.apiserver import ApiServer
from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.demo_node import DEVICE_PLUGIN_RESOURCES, SELECTION, build, demo_claims
from hostdev_testing.fakesysfs import SampleHost
from hostdev_testing.kubelet import KubeletSimulator, RegisteredPlugin
from hostdev_testing.kubelet_dp import DevicePluginKubelet
from hostdev_testing.nats import NatsServer
from hostdev_testing.schemas import SchemasMissing, schemas_dir
from hostdev_testing.services import NodeConfig, Services, running_services

DRIVER = "hostdev.k8s.io"
NODE = "demo-node"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a result table."""

    cells: tuple[str, ...]
    failed: bool


def table(header: tuple[str, ...], rows: list[Row]) -> str:
    """Aligned columns."""
    lines = [header, *(r.cells for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines[1:]]
    return "\n".join(line.rstrip() for line in out)


async def _claims(plugin: RegisteredPlugin, cluster: Cluster, sample: SampleHost) -> list[Row]:
    rows = []
    await cluster.create_namespace("demo")
    for item in demo_claims(sample):
        claim = await cluster.allocated_claim(
            "demo", item.name, [Allocated(item.request, item.device)], config=item.config
        )
        t0 = time.perf_counter()
        prepared = await plugin.prepare([claim])
        t1 = time.perf_counter()
        unprepared = await plugin.unprepare([claim])
        t2 = time.perf_counter()
        result = prepared.claims[claim.uid]
        error = result.error or unprepared.claims[claim.uid].error
        rows.append(
            Row(
                (
                    f"demo/{item.name}",
                    item.family,
                    ", ".join(d.device_name for d in result.devices),
                    next((i for d in result.devices for i in d.cdi_device_ids), ""),
                    f"{(t1 - t0) * 1000:.1f} ms",
                    f"{(t2 - t1) * 1000:.1f} ms",
                    error or "ok",
                ),
                bool(error),
            )
        )
    return rows


async def _device_plugin(dp: DevicePluginKubelet) -> list[Row]:
    rows = []
    for spec in DEVICE_PLUGIN_RESOURCES:
        name = str(spec["name"])
        devices = await dp.wait_for(name, lambda d: bool(d), timeout=20)
        first = sorted(d.id for d in devices)[0]
        t0 = time.perf_counter()
        result = await dp.allocate(name, [first])
        elapsed = (time.perf_counter() - t0) * 1000
        rows.append(
            Row(
                (
                    name,
                    f"{len(devices)} IDs",
                    first,
                    ", ".join(c for c in result.cdi_devices),
                    f"{elapsed:.1f} ms",
                ),
                not result.cdi_devices,
            )
        )
    return rows


async def _drive(
    config: NodeConfig, services: Services, cluster: Cluster, sample: SampleHost
) -> int:
    dp = DevicePluginKubelet(config.device_plugins_dir)
    await dp.start()
    kubelet = KubeletSimulator(config.registry_dir)
    try:
        started = time.perf_counter()
        await services.start(processes=True)
        plugin = await kubelet.wait_for_driver(config.driver, timeout=20)
        print(
            f"{config.driver} registered with the simulated kubelet over {plugin.version} "
            f"{(time.perf_counter() - started) * 1000:.0f} ms after the services started"
        )
        slices = await cluster.slices()
        devices = sum(len(s["spec"].get("devices", [])) for s in slices)
        print(f"ResourceSlices of {config.node}: {len(slices)} slices, {devices} devices\n")
        claim_rows = await _claims(plugin, cluster, sample)
        print("DRA claims (NodePrepareResources, then NodeUnprepareResources):")
        print(
            table(
                (
                    "claim",
                    "family",
                    "device",
                    "first CDI device ID",
                    "prepare",
                    "unprepare",
                    "result",
                ),
                claim_rows,
            )
        )
        dp_rows = await _device_plugin(dp)
        print("\nDevice plugin (Allocate through resources.limits):")
        print(table(("resource", "offered", "allocated", "CDI device", "allocate"), dp_rows))
        return 1 if any(r.failed for r in claim_rows + dp_rows) else 0
    finally:
        await kubelet.close()
        await services.stop_all()
        await dp.close()


async def _run(workdir: Path) -> int:
    nats_server = NatsServer(workdir / "nats")
    nats_url = nats_server.start()
    try:
        try:
            schemas: Path | None = schemas_dir()
        except SchemasMissing as err:
            print(f"note: {err}; the API emulator will not check objects against them")
            schemas = None
        async with ApiServer(schemas_dir=schemas) as api_url:
            sample = build(workdir / "root")
            selection = workdir / "devices.yaml"
            selection.write_text(json.dumps(SELECTION))
            config = NodeConfig(
                node=NODE,
                driver=DRIVER,
                nats_url=nats_url,
                api_url=api_url,
                root=sample.root,
                workdir=workdir / "node",
                devices_config=selection,
            )
            async with (
                Cluster(api_url, NODE, DRIVER) as cluster,
                running_services(config) as services,
            ):
                await cluster.create_node()
                code = await _drive(config, services, cluster, sample)
            left = [p for p in workdir.rglob("*") if p.is_socket()]
            print(f"\nstopped every service; sockets left behind: {len(left)}")
            return code or (1 if left else 0)
    finally:
        nats_server.stop()


def main() -> None:
    """Run the demo in a fresh temporary directory and remove it afterwards."""
    argparse.ArgumentParser(description=__doc__).parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hostdev-demo-", dir="/tmp"))
    try:
        code = asyncio.run(_run(workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
