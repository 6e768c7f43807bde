"""A rolling update of the gateway (DaemonSet maxSurge): two gateways serve device plugin
sockets at once, the new one takes the resource over, the old one leaves only its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest_asyncio

from hostdev_testing.fakehost import DEMO_HOST_PATHS
from hostdev_testing.kubelet_dp import DevicePluginKubelet, DpDevice
from hostdev_testing.services import NodeConfig, Services

KVM = "devices.kubevirt.io/kvm"
SLOTS = 110
OLD, NEW = "0b7e5c1a-old0-4f1e-9a53-3c2d11aa0001", "5d2f8e4b-new0-4c7a-8b21-7e9f22bb0002"


def _socket(config: NodeConfig, uid: str) -> Path:
    return config.device_plugins_dir / f"hostdev-devices.kubevirt.io_kvm-{uid[:8]}.sock"


def _all_healthy(devices: list[DpDevice]) -> bool:
    return len(devices) == SLOTS and all(d.healthy for d in devices)


@pytest_asyncio.fixture
async def per_instance_kubelet(node_config: NodeConfig) -> AsyncIterator[DevicePluginKubelet]:
    """A kubelet whose device manager keeps endpoints per plugin instance (1.37+)."""
    simulator = DevicePluginKubelet(node_config.device_plugins_dir, instance_endpoints=True)
    await simulator.start()
    node_config.pod_resources_socket.parent.mkdir(parents=True, exist_ok=True)
    await simulator.serve_pod_resources(node_config.pod_resources_socket)
    try:
        yield simulator
    finally:
        await simulator.close()


@dataclass
class Allocations:
    """Allocates one KVM slot after another, as pods keep arriving, recording every failure."""

    kubelet: DevicePluginKubelet
    done: int = 0
    failures: list[str] = field(default_factory=list)
    _progress: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def run(self) -> None:
        for slot in range(SLOTS):
            try:
                result = await self.kubelet.allocate(KVM, [f"kvm-s{slot}"])
                if not result.cdi_devices:
                    self.failures.append(f"kvm-s{slot}: no CDI device")
            except Exception as err:
                self.failures.append(f"kvm-s{slot}: {err}")
            async with self._progress:
                self.done += 1
                self._progress.notify_all()

    async def more(self, count: int) -> None:
        """Wait until `count` more allocations have finished."""
        target = self.done + count
        async with asyncio.timeout(10), self._progress:
            await self._progress.wait_for(lambda: self.done >= target)


async def _start_old(services: Services, kubelet: DevicePluginKubelet, config: NodeConfig) -> None:
    body = {
        "hostPaths": list(DEMO_HOST_PATHS),
        "resources": [{"name": KVM, "devices": ["kvm"], "shares": SLOTS}],
    }
    config.devices_config.write_text(json.dumps(body))
    services.per_service_env["gateway"] = {"HOSTDEV_POD_UID": OLD}
    await services.start()
    await kubelet.wait_for(KVM, _all_healthy, timeout=10)


async def test_rolling_update_switches_to_the_new_gateway_without_a_failed_allocate(
    services: Services, per_instance_kubelet: DevicePluginKubelet, node_config: NodeConfig
) -> None:
    """The old gateway serves; the new one starts beside it on its own socket and registers;
    the kubelet lists from the new one; the old one stops and removes only its own socket.
    Allocations run the whole time and none fails."""
    kubelet = per_instance_kubelet
    await _start_old(services, kubelet, node_config)
    old = kubelet.registered(KVM)
    assert old is not None
    assert old.endpoint == _socket(node_config, OLD).name
    allocations = Allocations(kubelet)
    running = asyncio.create_task(allocations.run())
    try:
        await allocations.more(3)
        await services.start_instance("gateway", "gateway-new", {"HOSTDEV_POD_UID": NEW})
        new = await kubelet.wait_registered(KVM, newer_than=old, timeout=10)
        assert new.endpoint == _socket(node_config, NEW).name
        assert _socket(node_config, OLD).exists(), "the new gateway removed the old one's socket"
        assert kubelet.stream_open(KVM)
        await allocations.more(3)

        await services.stop("gateway")
        assert not _socket(node_config, OLD).exists()
        assert _socket(node_config, NEW).exists(), "the old gateway removed the new one's socket"
        assert kubelet.registered(KVM) == new
        assert kubelet.stream_open(KVM)
        await allocations.more(3)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert allocations.failures == []
    assert _all_healthy(kubelet.devices(KVM))


async def test_kubelet_dropping_the_new_gateway_when_the_old_stops_gets_it_back(
    services: Services, dp_kubelet: DevicePluginKubelet, node_config: NodeConfig
) -> None:
    """Kubelets up to 1.36 disconnect the resource's current client (the new gateway) when the
    old gateway's stream ends; the new gateway notices and registers again by itself, its
    socket untouched, and allocation works."""
    await _start_old(services, dp_kubelet, node_config)
    old = dp_kubelet.registered(KVM)
    assert old is not None
    await services.start_instance("gateway", "gateway-new", {"HOSTDEV_POD_UID": NEW})
    new = await dp_kubelet.wait_registered(KVM, newer_than=old, timeout=10)
    assert new.endpoint == _socket(node_config, NEW).name
    assert (await dp_kubelet.allocate(KVM, ["kvm-s1"])).cdi_devices

    await services.stop("gateway")
    again = await dp_kubelet.wait_registered(KVM, newer_than=new, timeout=10)
    assert again.endpoint == _socket(node_config, NEW).name
    assert _socket(node_config, NEW).exists()
    assert not _socket(node_config, OLD).exists()
    await dp_kubelet.wait_for(KVM, _all_healthy, timeout=10)
    assert (await dp_kubelet.allocate(KVM, ["kvm-s2"])).cdi_devices
