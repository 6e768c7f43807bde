"""Device health end to end: host changes reach the health stream, ListAndWatch and slice taints."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import msgspec
import nats

from hostdev_events import subjects
from hostdev_events.inventory import HealthChanged
from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.fakehost import DEMO_HOST_PATHS, FakeHost
from hostdev_testing.kubelet import KubeletSimulator
from hostdev_testing.kubelet_dp import DevicePluginKubelet, DpDevice
from hostdev_testing.services import NodeConfig, Services

TUN = "example.com/tun"


def _tun_state(devices: list[DpDevice]) -> set[str]:
    return {d.health for d in devices}


def _taint(slices: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    for item in slices:
        for entry in item["spec"].get("devices", []):
            if entry["name"] == device:
                taints: list[dict[str, Any]] = entry.get("taints", [])
                return taints
    raise AssertionError(f"{device} is not published")


def _fast(config: NodeConfig, services: Services) -> None:
    config.devices_config.write_text(
        json.dumps(
            {
                "hostPaths": list(DEMO_HOST_PATHS),
                "resources": [{"name": TUN, "devices": ["tun"], "shares": 2}],
            }
        )
    )
    services.extra_env |= {
        "HOSTDEV_SCAN_SECONDS": "0.05",
        "HOSTDEV_DEBOUNCE_SECONDS": "0.2",
        "HOSTDEV_GONE_SECONDS": "60",
        "HOSTDEV_TAINT_UNHEALTHY": "true",
        "HOSTDEV_HEALTH_RESEND_SECONDS": "0.2",
        "HOSTDEV_HEALTH_TIMEOUT_SECONDS": "1",
    }


async def test_removed_device_turns_unhealthy_everywhere_and_recovers(
    services: Services,
    kubelet: KubeletSimulator,
    dp_kubelet: DevicePluginKubelet,
    node_config: NodeConfig,
    fake_host: FakeHost,
    cluster: Cluster,
) -> None:
    """Removing /dev/net/tun reports it Unhealthy on the DRA stream, in ListAndWatch and as a
    taint; putting it back reports Healthy again in all three."""
    _fast(node_config, services)
    await services.start()
    plugin = await kubelet.wait_for_driver(node_config.driver, timeout=10)
    claim = await cluster.allocated_claim("default", "net", [Allocated("tun", "tun")])
    assert (await plugin.prepare([claim])).kubelet_failure is None
    await dp_kubelet.wait_for(TUN, lambda d: _tun_state(d) == {"Healthy"}, timeout=10)

    async with plugin.watch_health() as stream:
        async for update in stream:
            if [(d.device_name, d.health) for d in update.devices] == [("tun", "Healthy")]:
                break
        fake_host.remove("/dev/net/tun")
        async for update in stream:
            if [(d.device_name, d.health) for d in update.devices] == [("tun", "Unhealthy")]:
                assert update.devices[0].message
                break
        await dp_kubelet.wait_for(TUN, lambda d: _tun_state(d) == {"Unhealthy"}, timeout=10)
        slices = await cluster.wait_for_slices(lambda s: bool(_taint(s, "tun")))
        assert _taint(slices, "tun") == [
            {"key": "hostdev.k8s.io/unhealthy", "effect": "NoSchedule"}
        ]

        fake_host.device_node("/dev/net/tun")
        async for update in stream:
            if [(d.device_name, d.health) for d in update.devices] == [("tun", "Healthy")]:
                break
    await dp_kubelet.wait_for(TUN, lambda d: _tun_state(d) == {"Healthy"}, timeout=10)
    await cluster.wait_for_slices(lambda s: not _taint(s, "tun"))


async def test_flapping_device_produces_at_most_a_few_events(
    services: Services, node_config: NodeConfig, fake_host: FakeHost
) -> None:
    """Ten presence changes within a second are debounced into at most two health events."""
    _fast(node_config, services)
    services.extra_env["HOSTDEV_DEBOUNCE_SECONDS"] = "0.5"
    events: list[HealthChanged] = []
    nc = await nats.connect(node_config.nats_url)
    try:

        async def collect(msg: Any) -> None:
            events.append(msgspec.json.decode(msg.data, type=HealthChanged))

        await nc.subscribe(subjects.health_changed(node_config.node), cb=collect)
        await services.start("discovery")
        for _ in range(5):  # the flap itself is what is being tested, so it is paced in time
            fake_host.remove("/dev/udmabuf")
            await asyncio.sleep(0.05)
            fake_host.device_node("/dev/udmabuf")
            await asyncio.sleep(0.05)
        await services.stop("discovery")  # a last scan has run; no more events can come
        flaps = [c for e in events for c in e.changes if c.device == "udmabuf"]
        assert len(flaps) <= 2
    finally:
        await nc.close()


async def test_health_stream_keeps_devices_fresh_beyond_the_staleness_window(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """With a 1 s timeout the stream repeats every device well within it, for several windows."""
    _fast(node_config, services)
    await services.start()
    plugin = await kubelet.wait_for_driver(node_config.driver, timeout=10)
    claim = await cluster.allocated_claim("default", "kvm", [Allocated("kvm", "kvm")])
    assert (await plugin.prepare([claim])).kubelet_failure is None
    received: list[float] = []
    async with plugin.watch_health() as stream:
        async for update in stream:
            if any(d.device_name == "kvm" for d in update.devices):
                timeout = next(
                    d.health_check_timeout_seconds for d in update.devices if d.device_name == "kvm"
                )
                received.append(update.received_at)
            if len(received) == 12:  # about 2.4 s: more than two staleness windows of 1 s
                break
    gaps = [b - a for a, b in itertools.pairwise(received)]
    assert timeout == 1
    assert max(gaps) < timeout
