"""A simulated kubelet driving a demo node, for compose: register, publish, prepare, repeat.

It builds the fake host tree the compose selection file names, registers the Node with the
API emulator, serves the device manager's `kubelet.sock` and the pod-resources socket, waits
for the driver to register, then prepares and unprepares one claim per demo device every
`HOSTDEV_DEMO_PERIOD_SECONDS`, so traces keep arriving in Jaeger. Stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from hostdev_testing.cluster import Allocated, ApiRequestFailed, Cluster
from hostdev_testing.fakehost import demo_host
from hostdev_testing.kubelet import KubeletSimulator
from hostdev_testing.kubelet_dp import DevicePluginKubelet

logger = logging.getLogger("kubelet-node")

DEMO_DEVICES = (("kvm", "kvm"), ("gpu", "dev-dri-renderd128"), ("net", "tun"), ("display", "x11"))


async def _create(make: Callable[[], Awaitable[object]]) -> None:
    try:
        await make()
    except ApiRequestFailed as err:
        if err.status != 409:  # a restarted simulator finds what it made before
            raise


async def _api_ready(cluster: Cluster, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        try:
            await _create(cluster.create_node)
            await _create(lambda: cluster.create_namespace("demo"))
            return
        except OSError:
            await asyncio.sleep(1.0)  # the emulator is still starting


async def drive(
    env: dict[str, str], stopping: asyncio.Event, rounds: int | None = None
) -> list[str]:
    """Run rounds of demo claims until stopping (or `rounds` rounds); returns each outcome."""
    node, driver = env["NODE_NAME"], env.get("HOSTDEV_DRIVER_NAME", "hostdev.k8s.io")
    demo_host(Path(env.get("HOSTDEV_HOST_ROOT", "/host")))
    period = float(env.get("HOSTDEV_DEMO_PERIOD_SECONDS", "15"))
    pod_resources = Path(env["HOSTDEV_POD_RESOURCES_SOCKET"])
    pod_resources.parent.mkdir(parents=True, exist_ok=True)
    async with (
        Cluster(env["HOSTDEV_KUBE_API_URL"], node, driver) as cluster,
        DevicePluginKubelet(Path(env["HOSTDEV_DEVICE_PLUGINS_DIR"])) as device_manager,
    ):
        await device_manager.serve_pod_resources(pod_resources)
        await _api_ready(cluster, stopping)
        kubelet = KubeletSimulator(Path(env["HOSTDEV_REGISTRY_DIR"]))
        outcomes: list[str] = []
        try:
            plugin = await kubelet.wait_for_driver(driver, timeout=300)
            logger.info("driver registered over %s", plugin.version)
            round_number = 0
            while not stopping.is_set() and (rounds is None or round_number < rounds):
                round_number += 1
                for request, device in DEMO_DEVICES:
                    claim = await cluster.allocated_claim(
                        "demo", f"{device}-{round_number}", [Allocated(request, device)]
                    )
                    prepared = await plugin.prepare([claim])
                    await plugin.unprepare([claim])
                    outcome = f"claim {claim.name}: {prepared.kubelet_failure or 'ok'}"
                    logger.info(outcome)
                    outcomes.append(outcome)
                if rounds is None or round_number < rounds:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopping.wait(), period)
        finally:
            await kubelet.close()
    return outcomes


def main() -> None:
    """Run until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def run() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await drive(dict(os.environ), stopping)

    asyncio.run(run())


if __name__ == "__main__":
    main()
