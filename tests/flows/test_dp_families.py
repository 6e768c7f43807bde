"""Device plugin allocation for PCI, vGPU and USB devices, USB identity, and NUMA preference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hostdev_testing.cluster import Cluster
from hostdev_testing.fakehost import FakeHost
from hostdev_testing.fakesysfs import SampleHost, two_numa_host
from hostdev_testing.kubelet_dp import DevicePluginKubelet
from hostdev_testing.services import NodeConfig, Services

NVME = "hostdev.k8s.io/nvme"
VGPU = "hostdev.k8s.io/gvtg-v5-8"
USB = "hostdev.k8s.io/sandisk"
VF = "hostdev.k8s.io/x710-vf"


def _usb_devices(slices: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        d["name"]: d
        for s in slices
        for d in s["spec"].get("devices", [])
        if d["attributes"]["family"] == {"string": "usb"}
    }


class TestOnTheAcceptanceHost:
    """PCI, mdev and USB resources on the acceptance host."""

    @pytest.fixture
    def fake_host(self, sample: SampleHost) -> FakeHost:
        """The acceptance host is this class's host tree."""
        return FakeHost(sample.root)

    @pytest.fixture(autouse=True)
    def config(self, node_config: NodeConfig) -> None:
        """PCI, mdev and USB selections, each also offered as a resource name."""
        node_config.devices_config.write_text(
            json.dumps(
                {
                    # The NVMe shares its IOMMU group with the AHCI controller: opt in.
                    "pci": [{"vendor": "144d", "wholeGroup": True}],
                    "sriov": [{"pf": "0000:3b:00.0"}],
                    "mdev": [{"parent": "0000:00:02.0", "types": ["i915-GVTg_V5_8"]}],
                    "usb": [{"vendor": "0781"}, {"vendor": "046d"}],
                    "resources": [
                        {"name": NVME, "family": "pci"},
                        {"name": VGPU, "family": "mdev"},
                        {"name": USB, "devices": ["usb-0781-*"]},
                        {"name": VF, "family": "sriov"},
                    ],
                }
            )
        )

    async def test_pci_allocation_sets_kubevirt_env_and_binds_vfio(
        self, services: Services, dp_kubelet: DevicePluginKubelet, sample: SampleHost
    ) -> None:
        """Allocate binds the NVMe's group to vfio-pci and sets PCI_RESOURCE_<NAME> to its BDF."""
        await services.start()
        await dp_kubelet.wait_for(NVME, lambda d: len(d) == 1, timeout=10)
        result = await dp_kubelet.allocate(NVME, ["pci-0000-01-00-0"])
        assert result.envs["PCI_RESOURCE_HOSTDEV_K8S_IO_NVME"] == "0000:01:00.0"
        assert (sample.root / "dev/vfio/12").exists()
        assert len(result.cdi_devices) == 1

    async def test_vf_allocation_binds_the_vf_and_sets_its_address(
        self, services: Services, dp_kubelet: DevicePluginKubelet, sample: SampleHost
    ) -> None:
        """A VF on iavf is bound to vfio-pci for the container; PCI_RESOURCE_<NAME> is its BDF."""
        await services.start()
        await dp_kubelet.wait_for(VF, lambda d: len(d) == 4, timeout=10)
        result = await dp_kubelet.allocate(VF, ["vf-0000-3b-02-2"])
        assert result.envs["PCI_RESOURCE_HOSTDEV_K8S_IO_X710-VF"] == "0000:3b:02.2"
        driver = sample.root / "sys/bus/pci/devices/0000:3b:02.2/driver"
        assert driver.resolve().name == "vfio-pci"

    async def test_mdev_allocation_sets_mdev_env_to_the_created_uuid(
        self, services: Services, dp_kubelet: DevicePluginKubelet, sample: SampleHost
    ) -> None:
        """Allocate creates the mdev and MDEV_PCI_RESOURCE_<NAME> carries its UUID."""
        await services.start()
        await dp_kubelet.wait_for(VGPU, lambda d: len(d) == 4, timeout=10)
        result = await dp_kubelet.allocate(VGPU, ["mdev-0000-00-02-0-i915-gvtg-v5-8-0"])
        (created,) = [p.name for p in (sample.root / "sys/bus/mdev/devices").iterdir()]
        assert result.envs["MDEV_PCI_RESOURCE_HOSTDEV_K8S_IO_GVTG-V5-8"] == created

    async def test_usb_allocation_sets_bus_and_device_numbers(
        self, services: Services, dp_kubelet: DevicePluginKubelet, node_config: NodeConfig
    ) -> None:
        """USB_RESOURCE_<NAME> is `bus:device` in decimal and the CDI spec has /dev/bus/usb/BBB/DDD."""
        services.extra_env["HOSTDEV_DP_CDI"] = "false"
        await services.start()
        devices = await dp_kubelet.wait_for(USB, lambda d: len(d) == 2, timeout=10)
        first = sorted(d.id for d in devices)[0]
        result = await dp_kubelet.allocate(USB, [first])
        bus, dev = result.envs["USB_RESOURCE_HOSTDEV_K8S_IO_SANDISK"].split(":")
        (node,) = result.devices
        assert node.container_path == f"/dev/bus/usb/{int(bus):03d}/{int(dev):03d}"

    async def test_identical_usb_devices_keep_distinct_stable_names(
        self, services: Services, cluster: Cluster, sample: SampleHost
    ) -> None:
        """Two sticks with the same vendor/product are two devices named by serial, the same
        after discovery restarts; the receiver without a serial is named by its port."""
        await services.start("discovery")
        first = _usb_devices(await cluster.slices())
        await services.stop("discovery")
        await services.start("discovery")
        again = _usb_devices(await cluster.slices())
        assert sorted(first) == sorted(again)
        sticks = [n for n in first if n.startswith("usb-0781-5581-")]
        assert len(sticks) == 2
        serials = {first[n]["attributes"]["serial"]["string"] for n in sticks}
        assert serials == set(sample.usb_stick_serials)
        assert "usb-046d-c52b-port-1-1" in first

    async def test_unplugged_usb_device_leaves_inventory_and_slices(
        self, services: Services, cluster: Cluster, sample: SampleHost
    ) -> None:
        """After an unplug the next scan drops the device (no grace period configured here)."""
        await services.start("discovery")
        before = _usb_devices(await cluster.slices())
        sample.sysfs.unplug_usb("2-3")
        await services.stop("discovery")
        await services.start("discovery")
        after = _usb_devices(await cluster.slices())
        assert len(after) == len(before) - 1


class TestOnTwoNumaNodes:
    """GetPreferredAllocation on a host with identical devices on two NUMA nodes."""

    @pytest.fixture
    def fake_host(self, short_dir: Path) -> FakeHost:
        """Four identical NVMe functions, two per NUMA node."""
        return FakeHost(two_numa_host(short_dir / "root").root)

    async def test_preferred_allocation_stays_on_the_numa_node_of_the_must_include_device(
        self, services: Services, dp_kubelet: DevicePluginKubelet, node_config: NodeConfig
    ) -> None:
        """With a NUMA-1 device required, the second device chosen is the other NUMA-1 one."""
        node_config.devices_config.write_text(
            json.dumps(
                {"pci": [{"vendor": "144d"}], "resources": [{"name": NVME, "family": "pci"}]}
            )
        )
        await services.start()
        devices = await dp_kubelet.wait_for(NVME, lambda d: len(d) == 4, timeout=10)
        numa = {d.id: d.numa_nodes for d in devices}
        everything = sorted(numa)
        chosen = await dp_kubelet.preferred_allocation(NVME, everything, ["pci-0000-81-00-0"], 2)
        assert chosen == ["pci-0000-81-00-0", "pci-0000-82-00-0"]
        chosen = await dp_kubelet.preferred_allocation(NVME, everything, ["pci-0000-02-00-0"], 2)
        assert chosen == ["pci-0000-02-00-0", "pci-0000-01-00-0"]
        assert numa["pci-0000-81-00-0"] == (1,)
