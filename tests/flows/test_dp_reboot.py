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
VGPU = "hostdev.k8s.io/gvtg-v5-8"
VGPU_ID = "mdev-0000-00-02-0-i915-gvtg-v5-8-0"
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
        json.dumps(
            {
                # The NVMe shares its IOMMU group with the AHCI controller: opt in.
                "pci": [{"vendor": "144d", "wholeGroup": True}],
                "resources": [{"name": NVME, "family": "pci"}],
            }
        )
    )
    await services.start()
    await dp_kubelet.wait_for(NVME, _is_held, timeout=10)
    await dp_kubelet.allocate(NVME, [NVME_ID])
    dp_kubelet.assign("vm", "default", "compute", NVME, [NVME_ID])
    return port


def _reboot_node(sample: SampleHost, config: NodeConfig, boot_id: Path) -> None:
    """Specs gone, the NVMe's group back on its own drivers, a new boot ID."""
    reboot(sample.root, config.cdi_root, boot_id, "boot-2", (sample.nvme, sample.nvme_sibling))


def _watch(dp_kubelet: DevicePluginKubelet, sample: SampleHost, config: NodeConfig) -> list[Moment]:
    """Every NVMe ListAndWatch message from now on, with the host's state when it arrived."""
    moments: list[Moment] = []

    def seen(resource: str, devices: tuple[DpDevice, ...]) -> None:
        if resource == NVME:
            moments.append(Moment(_is_held(list(devices)), _host(sample, config)))

    dp_kubelet.observe(seen)
    return moments


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
    assert before.driver == "vfio-pci"
    assert len(before.specs) == 1

    await services.stop_all()
    _reboot_node(sample, node_config, short_dir / "boot_id")
    assert _host(sample, node_config) == HostState(specs=(), driver="nvme")
    moments = _watch(dp_kubelet, sample, node_config)
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


async def test_after_a_reboot_an_allocation_no_pod_holds_is_released_not_rebuilt(
    services: Services,
    dp_kubelet: DevicePluginKubelet,
    node_config: NodeConfig,
    sample: SampleHost,
    short_dir: Path,
) -> None:
    """The pod went away with the reboot: its NVMe is reported healthy at once, nothing is
    rebuilt for it, and the pod-resources reconcile releases it without touching the host."""
    port = await _pod_holds_the_nvme(services, dp_kubelet, node_config, short_dir / "boot_id")
    await services.stop_all()
    _reboot_node(sample, node_config, short_dir / "boot_id")
    dp_kubelet.unassign("vm", "default")
    await dp_kubelet.restart()
    await services.start()
    await dp_kubelet.wait_for(NVME, _is_held, timeout=10)
    # Two passes in a row must find it unused (the gateway's start-up pass may be the first).
    first, second = [await services.reconcile_pod_resources() for _ in range(2)]
    assert first.get(NVME, ()) + second.get(NVME, ()) == (NVME_ID,)
    assert _host(sample, node_config) == HostState(specs=(), driver="nvme")
    assert await _restored(port) == ""


async def test_after_a_reboot_a_held_vgpu_is_created_again_with_its_uuid(
    services: Services,
    dp_kubelet: DevicePluginKubelet,
    node_config: NodeConfig,
    sample: SampleHost,
    short_dir: Path,
) -> None:
    """A reboot removes mediated devices; the pod's mdev comes back with the UUID its
    container was given (KubeVirt's env) and a spec, before the ID is healthy again."""
    boot_id = short_dir / "boot_id"
    boot_id.write_text("boot-1\n")
    services.extra_env["HOSTDEV_BOOT_ID_FILE"] = str(boot_id)
    node_config.devices_config.write_text(
        json.dumps(
            {
                "mdev": [{"parent": "0000:00:02.0", "types": ["i915-GVTg_V5_8"]}],
                "resources": [{"name": VGPU, "family": "mdev"}],
            }
        )
    )
    mdevs = sample.root / "sys/bus/mdev/devices"

    def state() -> tuple[tuple[str, ...], tuple[str, ...]]:
        specs = tuple(sorted(p.name for p in node_config.cdi_root.glob(f"*{VGPU_ID}.json")))
        return specs, tuple(sorted(p.name for p in mdevs.iterdir()))

    def held(devices: list[DpDevice]) -> bool:
        return any(d.id == VGPU_ID and d.healthy for d in devices)

    await services.start()
    await dp_kubelet.wait_for(VGPU, held, timeout=10)
    result = await dp_kubelet.allocate(VGPU, [VGPU_ID])
    uuid = result.envs["MDEV_PCI_RESOURCE_HOSTDEV_K8S_IO_GVTG-V5-8"]
    dp_kubelet.assign("vm", "default", "compute", VGPU, [VGPU_ID])
    assert state()[1] == (uuid,)

    await services.stop_all()
    reboot(sample.root, node_config.cdi_root, boot_id, "boot-2", ())
    assert state() == ((), ())
    seen: list[tuple[bool, tuple[tuple[str, ...], tuple[str, ...]]]] = []
    dp_kubelet.observe(
        lambda resource, devices: seen.append((held(list(devices)), state()))
        if resource == VGPU
        else None
    )
    await dp_kubelet.restart()
    await services.start()
    await dp_kubelet.wait_for(VGPU, held, timeout=10)
    at_healthy = {s for ok, s in seen if ok}
    assert len(at_healthy) == 1, f"healthy before the rebuild: {seen}"
    ((specs, made),) = at_healthy
    assert len(specs) == 1
    assert made == (uuid,)


async def test_without_pod_resources_recorded_allocations_stay_unhealthy_until_it_answers(
    services: Services,
    dp_kubelet: DevicePluginKubelet,
    node_config: NodeConfig,
    sample: SampleHost,
    short_dir: Path,
) -> None:
    """After a reboot the kubelet does not answer pod-resources yet: whatever the preparer
    has on record is reported Unhealthy (not rebuilt: no pod is known to hold it) until
    pod-resources answers; then the held NVMe is rebuilt and only then healthy."""
    await _pod_holds_the_nvme(services, dp_kubelet, node_config, short_dir / "boot_id")
    before = _host(sample, node_config)
    await services.stop_all()
    _reboot_node(sample, node_config, short_dir / "boot_id")
    moments = _watch(dp_kubelet, sample, node_config)
    await dp_kubelet.stop_pod_resources()
    registration = dp_kubelet.registered(NVME)
    await dp_kubelet.restart()
    services.extra_env["HOSTDEV_POD_RESOURCES_SECONDS"] = "0.2"  # the retry period
    await services.start()
    await dp_kubelet.wait_registered(NVME, timeout=10, newer_than=registration)
    await dp_kubelet.wait_for(NVME, lambda d: bool(moments), timeout=10)
    assert [m.healthy for m in moments] == [False] * len(moments)
    assert _host(sample, node_config) == HostState(specs=(), driver="nvme")

    await dp_kubelet.serve_pod_resources(node_config.pod_resources_socket)
    await dp_kubelet.wait_for(NVME, _is_held, timeout=10)
    assert {m.host for m in moments if m.healthy} == {before}
