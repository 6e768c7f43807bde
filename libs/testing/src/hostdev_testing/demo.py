"""The demo: a simulated node with NATS, the API emulator, the five services and a kubelet.

Run it with `./dev demo`. It prepares and unprepares one claim per demo device through
the kubelet's DRA socket, prints what happened, stops everything and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hostdev_testing.apiserver import ApiServer
from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.fakehost import DEMO_HOST_PATHS, demo_host
from hostdev_testing.kubelet import KubeletSimulator
from hostdev_testing.nats import NatsServer
from hostdev_testing.schemas import SchemasMissing, schemas_dir
from hostdev_testing.services import NodeConfig, running_services

DRIVER = "hostdev.k8s.io"
NODE = "demo-node"

# (claim name, request name, device) for each demo device.
DEMO_CLAIMS = (
    ("vm-kvm", "kvm", "kvm"),
    ("render", "gpu", "dev-dri-renderd128"),
    ("vhost", "net", "vhost-net"),
    ("tun", "net", "tun"),
    ("dmabuf", "buf", "udmabuf"),
    ("x11", "display", "x11"),
)


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the result table."""

    claim: str
    devices: str
    cdi_ids: str
    prepare_ms: float
    unprepare_ms: float
    error: str


def _table(rows: list[Row]) -> str:
    header = ("claim", "devices", "CDI device IDs", "prepare", "unprepare", "result")
    lines = [
        (
            r.claim,
            r.devices,
            r.cdi_ids,
            f"{r.prepare_ms:.1f} ms",
            f"{r.unprepare_ms:.1f} ms",
            r.error or "ok",
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(line.rstrip() for line in out)


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
            host = demo_host(workdir / "root")
            config = NodeConfig(
                node=NODE,
                driver=DRIVER,
                nats_url=nats_url,
                api_url=api_url,
                root=host.root,
                workdir=workdir / "node",
                devices_config=host.write_config(workdir / "devices.yaml", DEMO_HOST_PATHS),
            )
            return await _drive(config)
    finally:
        nats_server.stop()


async def _drive(config: NodeConfig) -> int:
    async with (
        Cluster(config.api_url, config.node, config.driver) as cluster,
        running_services(config) as services,
    ):
        await cluster.create_node()
        await cluster.create_namespace("demo")
        started = time.perf_counter()
        await services.start(processes=True)
        config.registry_dir.mkdir(parents=True, exist_ok=True)
        kubelet = KubeletSimulator(config.registry_dir)
        try:
            plugin = await kubelet.wait_for_driver(config.driver, timeout=20)
            print(
                f"driver {config.driver} registered with the simulated kubelet "
                f"({plugin.version}) {(time.perf_counter() - started) * 1000:.0f} ms after start"
            )
            slices = await cluster.slices()
            count = sum(len(s["spec"]["devices"]) for s in slices)
            print(f"ResourceSlices of {config.node}: {len(slices)} slice(s), {count} devices\n")
            rows = []
            for name, request, device in DEMO_CLAIMS:
                claim = await cluster.allocated_claim("demo", name, [Allocated(request, device)])
                t0 = time.perf_counter()
                prepared = await plugin.prepare([claim])
                t1 = time.perf_counter()
                unprepared = await plugin.unprepare([claim])
                t2 = time.perf_counter()
                result = prepared.claims[claim.uid]
                rows.append(
                    Row(
                        claim=f"demo/{name}",
                        devices=", ".join(d.device_name for d in result.devices),
                        cdi_ids=", ".join(i for d in result.devices for i in d.cdi_device_ids),
                        prepare_ms=(t1 - t0) * 1000,
                        unprepare_ms=(t2 - t1) * 1000,
                        error=result.error or unprepared.claims[claim.uid].error,
                    )
                )
            print(_table(rows))
        finally:
            await kubelet.close()
    leftovers = list(config.workdir.rglob("*.sock"))
    print(f"\nstopped every service; sockets left behind: {len(leftovers)}")
    failed = [r for r in rows if r.error] + leftovers
    return 1 if failed else 0


def main() -> None:
    """Run the demo in a fresh temporary directory and remove it afterwards."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hostdev-demo-", dir="/tmp"))
    try:
        code = asyncio.run(_run(workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
