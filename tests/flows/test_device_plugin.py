"""The classic device plugin API next to DRA: registration, ListAndWatch, Allocate, restarts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.fakehost import DEMO_HOST_PATHS, FakeHost
from hostdev_testing.kubelet import KubeletSimulator
from hostdev_testing.kubelet_dp import DevicePluginKubelet, DpDevice
from hostdev_testing.kubelet_types import PluginCallError
from hostdev_testing.services import NodeConfig, Services

X11 = "intel.com/x11"
KVM = "devices.kubevirt.io/kvm"
RENDER = "intel.com/igpu"
UDMA = "intel.com/udma"

RESOURCES: list[dict[str, Any]] = [
    {"name": X11, "devices": ["x11"], "shares": 10},
    {"name": KVM, "devices": ["kvm"], "shares": 110},
    {"name": RENDER, "devices": ["dev-dri-render*"]},
    {"name": UDMA, "devices": ["udmabuf"]},
]


def _configure(fake_host: FakeHost, config: NodeConfig, **extra: Any) -> None:
    body = {"hostPaths": list(DEMO_HOST_PATHS), "resources": RESOURCES, **extra}
    config.devices_config.write_text(json.dumps(body))


async def _start(services: Services, dp_kubelet: DevicePluginKubelet) -> None:
    await services.start()
    for resource in (X11, KVM, RENDER, UDMA):
        await dp_kubelet.wait_registered(resource, timeout=10)


def _healthy(devices: list[DpDevice]) -> set[str]:
    return {d.id for d in devices if d.healthy}


async def test_each_resource_registers_and_lists_its_devices(
    services: Services,
    dp_kubelet: DevicePluginKubelet,
    node_config: NodeConfig,
    fake_host: FakeHost,
) -> None:
    """Shared devices appear as many slots, exclusive ones once, all healthy."""
    _configure(fake_host, node_config)
    await _start(services, dp_kubelet)
    x11 = await dp_kubelet.wait_for(X11, lambda d: len(d) == 10)
    assert _healthy(x11) == {f"x11-s{i}" for i in range(10)}
    kvm = await dp_kubelet.wait_for(KVM, lambda d: len(d) == 110)
    assert len(_healthy(kvm)) == 110
    render = await dp_kubelet.wait_for(RENDER, lambda d: len(d) == 1)
    assert [d.id for d in render] == ["dev-dri-renderd128"]
    registration = dp_kubelet.registered(X11)
    assert registration is not None
    assert registration.options.get_preferred_allocation_available is True


async def test_allocate_returns_cdi_names_whose_spec_has_the_device(
    services: Services,
    dp_kubelet: DevicePluginKubelet,
    node_config: NodeConfig,
    fake_host: FakeHost,
) -> None:
    """Allocate answers with the CDI device of the slot; the spec on disk mounts the X11 socket dir."""
    _configure(fake_host, node_config)
    await _start(services, dp_kubelet)
    await dp_kubelet.wait_for(X11, lambda d: len(d) == 10)
    result = await dp_kubelet.allocate(X11, ["x11-s3"])
    (cdi,) = result.cdi_devices
    assert cdi.startswith(f"k8s.{node_config.driver}/device=dp_intel-com-x11_x11-s3-")
    assert result.annotations["hostdev.k8s.io/devices"] == "x11-s3=x11"
    (spec_file,) = node_config.cdi_root.glob("*dp_intel-com-x11_x11-s3.json")
    spec = json.loads(spec_file.read_text())
    mount = spec["devices"][0]["containerEdits"]["mounts"][0]
    assert mount["containerPath"] == "/tmp/.X11-unix"


async def test_allocate_without_cdi_returns_device_nodes(
    services: Services,
    dp_kubelet: DevicePluginKubelet,
    node_config: NodeConfig,
    fake_host: FakeHost,
) -> None:
    """With HOSTDEV_DP_CDI off, Allocate hands over device nodes and mounts itself."""
    _configure(fake_host, node_config)
    services.extra_env["HOSTDEV_DP_CDI"] = "false"
    await _start(services, dp_kubelet)
    await dp_kubelet.wait_for(RENDER, lambda d: len(d) == 1)
    result = await dp_kubelet.allocate(RENDER, ["dev-dri-renderd128"])
    assert result.cdi_devices == ()
    (device,) = result.devices
    assert device.container_path == "/dev/dri/renderD128"
    assert device.host_path == str(node_config.root / "dev/dri/renderD128")


async def test_device_held_by_resource_is_refused_to_a_claim_and_back(
    services: Services,
    dp_kubelet: DevicePluginKubelet,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    fake_host: FakeHost,
    cluster: Cluster,
) -> None:
    """An exclusive device allocated through a resource name is refused to a DRA claim until
    the pod-resources API shows it unused, and a DRA-held device turns Unhealthy for the
    device plugin until the claim is unprepared."""
    _configure(fake_host, node_config)
    await _start(services, dp_kubelet)
    plugin = await kubelet.wait_for_driver(node_config.driver, timeout=10)
    await dp_kubelet.wait_for(UDMA, lambda d: _healthy(d) == {"udmabuf"})
    await dp_kubelet.allocate(UDMA, ["udmabuf"])
    dp_kubelet.assign("pod-a", "default", "main", UDMA, ["udmabuf"])
    claim = await cluster.allocated_claim("default", "wants-udma", [Allocated("buf", "udmabuf")])
    refused = await plugin.prepare([claim])
    assert "udmabuf" in refused.claims[claim.uid].error
    assert "dp_intel-com-udma_udmabuf" in refused.claims[claim.uid].error

    dp_kubelet.unassign("pod-a", "default")
    # Two passes in a row must see it unused before it is released.
    await services.reconcile_pod_resources()
    await services.reconcile_pod_resources()
    prepared = await plugin.prepare([claim])
    assert prepared.claims[claim.uid].error == ""
    held = await dp_kubelet.wait_for(UDMA, lambda d: not _healthy(d))
    assert [d.health for d in held] == ["Unhealthy"]
    with pytest.raises(ValueError, match="udmabuf"):
        await dp_kubelet.allocate(UDMA, ["udmabuf"])  # the kubelet never offers unhealthy IDs
    await plugin.unprepare([claim])
    await dp_kubelet.wait_for(UDMA, lambda d: _healthy(d) == {"udmabuf"})


async def test_kubelet_restart_is_followed_by_registration_again(
    services: Services,
    dp_kubelet: DevicePluginKubelet,
    node_config: NodeConfig,
    fake_host: FakeHost,
) -> None:
    """After the kubelet wipes its directory, every resource registers again within 2 seconds."""
    _configure(fake_host, node_config)
    await _start(services, dp_kubelet)
    before = {r: dp_kubelet.registered(r) for r in (X11, KVM, RENDER, UDMA)}
    await dp_kubelet.restart()
    for resource, old in before.items():
        again = await dp_kubelet.wait_registered(resource, timeout=2.0, newer_than=old)
        assert again.resource_name == resource
    await dp_kubelet.wait_for(X11, lambda d: len(_healthy(d)) == 10)


async def test_unknown_device_id_is_refused_with_invalid_argument(
    services: Services,
    dp_kubelet: DevicePluginKubelet,
    node_config: NodeConfig,
    fake_host: FakeHost,
) -> None:
    """Allocate for an ID the plugin never offered is a gRPC INVALID_ARGUMENT error."""
    _configure(fake_host, node_config)
    await _start(services, dp_kubelet)
    await dp_kubelet.wait_for(RENDER, lambda d: len(d) == 1)
    with pytest.raises(PluginCallError) as refused:
        await dp_kubelet.allocate(RENDER, ["no-such-id"], strict=False)
    assert "no-such-id" in str(refused.value)


def test_resource_names_map_to_kubevirt_env_names() -> None:
    """KubeVirt's env naming: upper case, `/` and `.` become `_`."""
    from hostdev_gateway.dp_model import env_suffix

    assert env_suffix("nvidia.com/GRID_T4-1Q") == "NVIDIA_COM_GRID_T4-1Q"
    assert env_suffix("devices.kubevirt.io/nvme") == "DEVICES_KUBEVIRT_IO_NVME"


async def test_list_and_watch_sends_a_new_list_when_a_device_comes_and_goes(
    services: Services,
    dp_kubelet: DevicePluginKubelet,
    node_config: NodeConfig,
    fake_host: FakeHost,
) -> None:
    """A new render node matching the resource's glob is added to the list; removing it
    takes it out again."""
    _configure(fake_host, node_config)
    services.extra_env |= {"HOSTDEV_SCAN_SECONDS": "0.05", "HOSTDEV_GONE_SECONDS": "0"}
    await _start(services, dp_kubelet)
    await dp_kubelet.wait_for(RENDER, lambda d: len(d) == 1)
    fake_host.device_node("/dev/dri/renderD129")
    grown = await dp_kubelet.wait_for(RENDER, lambda d: len(d) == 2)
    assert {d.id for d in grown} == {"dev-dri-renderd128", "dev-dri-renderd129"}
    fake_host.remove("/dev/dri/renderD129")
    shrunk = await dp_kubelet.wait_for(RENDER, lambda d: len(d) == 1)
    assert [d.id for d in shrunk] == ["dev-dri-renderd128"]
