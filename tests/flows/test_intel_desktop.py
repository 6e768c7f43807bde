"""The desktop-virtualization layout of an Intel edge box (k8s/overlays/intel-desktop) on a
fake host: the five intel.com resources with 1,000 IDs each through the device plugin, each
ID handing over what the Intel plugin mounts, and the same devices through DRA."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.fakehost import FakeHost
from hostdev_testing.kubelet import KubeletSimulator
from hostdev_testing.kubelet_dp import DevicePluginKubelet
from hostdev_testing.schemas import validate_cdi
from hostdev_testing.services import NodeConfig, Services

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "k8s" / "overlays" / "intel-desktop"
SHARES = 1000
USB_NODES = ("/dev/bus/usb/001/001", "/dev/bus/usb/001/004", "/dev/bus/usb/002/001")
VFIO_NODES = ("/dev/vfio/vfio", "/dev/vfio/12")
IGPU_NODES = ("/dev/dri/card0", "/dev/dri/renderD128")

# What each resource hands over: device nodes, mounts and env (the Intel plugin's Allocate).
EXPECTED: dict[str, tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]] = {
    "intel.com/x11": ((), ("/tmp/.X11-unix",), {"DISPLAY": ":0"}),
    "intel.com/udma": (("/dev/udmabuf",), (), {}),
    "intel.com/vfio": (VFIO_NODES, (), {}),
    "intel.com/igpu": (IGPU_NODES, (), {}),
    "intel.com/usb": (USB_NODES, (), {}),
}


@pytest.fixture
def fake_host(short_dir: Path) -> FakeHost:
    """An edge box with a display, udmabuf, one VFIO group, the iGPU and three USB nodes."""
    host = FakeHost(short_dir / "root")
    host.directory("/tmp/.X11-unix")
    for node in ("/dev/udmabuf", *VFIO_NODES, *USB_NODES):
        host.device_node(node)
    for minor in ("card0", "renderD128"):
        host.drm_node(minor, "0000:00:02.0", "pci0000:00")
    return host


@pytest.fixture(autouse=True)
def selection(node_config: NodeConfig) -> None:
    """The overlay's device selection, as shipped."""
    (configmap,) = yaml.safe_load_all((OVERLAY / "devices.yaml").read_text())
    node_config.devices_config.write_text(configmap["data"]["devices.yaml"])


def _edits(spec: dict[str, Any], root: Path) -> tuple[set[str], set[str], dict[str, str]]:
    """(device node paths, mount paths, env) of a CDI spec's devices, host paths checked."""
    nodes: set[str] = set()
    mounts: set[str] = set()
    env: dict[str, str] = {}
    for device in spec["devices"]:
        edits = device["containerEdits"]
        for node in edits.get("deviceNodes", []):
            assert node["hostPath"] == str(root / node["path"].lstrip("/"))
            nodes.add(node["path"])
        for mount in edits.get("mounts", []):
            assert mount["hostPath"] == str(root / mount["containerPath"].lstrip("/"))
            mounts.add(mount["containerPath"])
        env.update(item.split("=", 1) for item in edits.get("env", []))
    return nodes, mounts, env


async def test_each_resource_offers_1000_ids_handing_over_what_the_intel_plugin_does(
    services: Services, dp_kubelet: DevicePluginKubelet, node_config: NodeConfig
) -> None:
    """x11 (the socket directory and DISPLAY), udma, the whole of /dev/vfio, card0 with
    renderD128, and /dev/bus/usb: 1,000 healthy IDs each; one container holding an ID of
    every resource gets exactly those nodes and mounts."""
    services.extra_env["HOSTDEV_DP_CDI"] = "false"
    await services.start()
    for resource, (nodes, mounts, env) in EXPECTED.items():
        devices = await dp_kubelet.wait_for(resource, lambda d: len(d) == SHARES, timeout=10)
        assert {d.health for d in devices} == {"Healthy"}
        result = await dp_kubelet.allocate(resource, [devices[0].id])
        assert {d.container_path for d in result.devices} == set(nodes), resource
        for device in result.devices:
            assert device.host_path == str(node_config.root / device.container_path.lstrip("/"))
        assert {m.container_path for m in result.mounts} == set(mounts), resource
        assert {k: v for k, v in result.envs.items() if k in env} == env, resource


async def test_the_same_devices_through_dra_in_one_claim(
    services: Services,
    kubelet: KubeletSimulator,
    dp_kubelet: DevicePluginKubelet,
    node_config: NodeConfig,
    cluster: Cluster,
) -> None:
    """A claim for the five devices (shared, each with a shareID) prepares into one CDI spec
    with every node, the X11 mount and DISPLAY; a device-plugin allocation of the same
    devices does not keep it out."""
    await services.start()
    plugin = await kubelet.wait_for_driver(node_config.driver, timeout=10)
    igpu = await dp_kubelet.wait_for("intel.com/igpu", lambda d: len(d) == SHARES, timeout=10)
    assert (await dp_kubelet.allocate("intel.com/igpu", [igpu[0].id])).cdi_devices
    names = ("x11", "udmabuf", "vfio", "igpu", "usb")
    claim = await cluster.allocated_claim(
        "default",
        "desktop",
        [Allocated(name, name, share_id=str(uuid.uuid4())) for name in names],
    )
    result = (await plugin.prepare([claim])).claims[claim.uid]
    assert result.error == ""
    assert {d.device_name for d in result.devices} == set(names)
    (spec_file,) = node_config.cdi_root.glob(f"k8s.{node_config.driver}-device_*{claim.uid}*")
    spec = json.loads(spec_file.read_bytes())
    validate_cdi(spec)
    nodes, mounts, env = _edits(spec, node_config.root)
    assert nodes == {n for expected in EXPECTED.values() for n in expected[0]}
    assert mounts == {"/tmp/.X11-unix"}
    assert env == {"DISPLAY": ":0"}
