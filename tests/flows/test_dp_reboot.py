"""Device-plugin allocations of running pods survive a node reboot and a service restart.

The kubelet never calls Allocate again for a running pod's devices, so the services rebuild
what a reboot wiped (CDI spec, vfio binding) before the device is reported healthy again.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from hostdev_events import subjects
from hostdev_testing.fakehost import FakeHost
from hostdev_testing.fakesysfs import SampleHost
from hostdev_testing.kubelet_dp import DevicePluginKubelet, DpDevice
from hostdev_testing.reboot import reboot
from hostdev_testing.services import NodeConfig, Services

NVME = "hostdev.k8s.io/nvme"
NVME_ID = "pci-0000-01-00-0"
RESTORED = f'hostdev_dp_allocations_restored_total{{resource="{NVME}"}}'


@pytest.fixture
def fake_host(sample: SampleHost) -> FakeHost:
    """This module's host tree is the acceptance host (it has the NVMe)."""
    return FakeHost(sample.root)


@dataclass(frozen=True)
class HostState:
    """What a container restart would find for the NVMe on the host."""

    specs: tuple[str, ...]
    driver: str


@dataclass(frozen=True)
class Moment:
    """One ListAndWatch message of the NVMe resource and the host's state when it arrived."""

    healthy: bool
    host: HostState


def _host(sample: SampleHost, config: NodeConfig) -> HostState:
    specs = tuple(sorted(p.name for p in config.cdi_root.glob(f"*dp_*{NVME_ID}.json")))
    driver = (sample.root / f"sys/bus/pci/devices/{sample.nvme}/driver").resolve().name
    return HostState(specs, driver)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _restored(port: int) -> str:
    """The preparer's restore counter line for the NVMe resource ("" when never counted)."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        text = await response.text()
    return next((line for line in text.splitlines() if line.startswith(RESTORED)), "")


def _is_held(devices: list[DpDevice]) -> bool:
    return [(d.id, d.healthy) for d in devices] == [(NVME_ID, True)]


async def _pod_holds_the_nvme(
    services: Services,
    dp_kubelet: DevicePluginKubelet,
    config: NodeConfig,
    boot_id: Path,
) -> int:
    """Start the node in boot-1 with a VM pod holding the NVMe; returns the preparer's port."""
    boot_id.write_text("boot-1\n")
    port = _free_port()
    services.extra_env["HOSTDEV_BOOT_ID_FILE"] = str(boot_id)
    services.per_service_env["preparer"] = {"HOSTDEV_HTTP_PORT": str(port)}
    config.devices_config.write_text(
        json.dumps({"pci": [{"vendor": "144d"}], "resources": [{"name": NVME, "family": "pci"}]})
    )
    await services.start()
    await dp_kubelet.wait_for(NVME, _is_held, timeout=10)
    await dp_kubelet.allocate(NVME, [NVME_ID])
    dp_kubelet.assign("vm", "default", "compute", NVME, [NVME_ID])
    return port


async def test_after_a_reboot_spec_and_vfio_binding_are_back_before_the_device_is_healthy(
    services: Services,
    dp_kubelet: DevicePluginKubelet,
    node_config: NodeConfig,
    sample: SampleHost,
    short_dir: Path,
) -> None:
    """A reboot empties the CDI directory and puts the NVMe back on its own driver; when the
    node comes back (kubelet and services restart, Allocate is not called again), every
    ListAndWatch message reporting the held NVMe healthy finds its spec and vfio-pci in place."""
    port = await _pod_holds_the_nvme(services, dp_kubelet, node_config, short_dir / "boot_id")
    before = _host(sample, node_config)
    assert before.driver == "vfio-pci" and len(before.specs) == 1

    await services.stop_all()
    reboot(
        sample.root,
        node_config.cdi_root,
        short_dir / "boot_id",
        "boot-2",
        (sample.nvme, sample.nvme_sibling),
    )
    assert _host(sample, node_config) == HostState(specs=(), driver="nvme")
    moments: list[Moment] = []
    dp_kubelet.observe(
        lambda resource, devices: moments.append(
            Moment(_is_held(list(devices)), _host(sample, node_config))
        )
        if resource == NVME
        else None
    )
    await dp_kubelet.restart()  # the kubelet comes back with the node, its checkpoint kept
    await services.start()
    await dp_kubelet.wait_for(NVME, _is_held, timeout=10)

    healthy = [m.host for m in moments if m.healthy]
    assert healthy, f"never reported healthy: {moments}"
    assert set(healthy) == {before}, f"healthy before the rebuild: {moments}"
    assert _host(sample, node_config) == before
    assert await _restored(port) == f"{RESTORED} 1.0"


async def test_a_service_restart_without_reboot_changes_nothing_on_the_host(
    services: Services,
    dp_kubelet: DevicePluginKubelet,
    node_config: NodeConfig,
    sample: SampleHost,
    short_dir: Path,
) -> None:
    """Same boot: the restarted services find the pod's spec and binding in place and leave
    them alone: no spec rewritten, no device reserved again, nothing counted as restored."""
    port = await _pod_holds_the_nvme(services, dp_kubelet, node_config, short_dir / "boot_id")
    before = _host(sample, node_config)
    (spec,) = before.specs
    written = os.stat(node_config.cdi_root / spec)
    registration = dp_kubelet.registered(NVME)
    await services.stop_all()

    asked: list[str] = []

    async def record(msg: object) -> None:
        asked.append(getattr(msg, "subject", ""))

    node = node_config.node
    for subject in (subjects.cdi_write(node), subjects.alloc_reserve(node)):
        await services.nc.subscribe(subject, cb=record)
    await services.start()
    await dp_kubelet.wait_registered(NVME, timeout=10, newer_than=registration)
    await dp_kubelet.wait_for(NVME, _is_held, timeout=10)

    assert _host(sample, node_config) == before
    again = os.stat(node_config.cdi_root / spec)
    assert (again.st_ino, again.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    await services.nc.flush()
    assert asked == []
    assert await _restored(port) == ""
