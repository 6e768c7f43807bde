"""The project's own sysfs readers understand the fake tree, before and after kernel writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostdev_sysfs import HostRoot, list_usb, read_function
from hostdev_testing.fakesysfs import FakeKernel, SampleHost, acceptance_host


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> SampleHost:
    """The acceptance host, shared by the tests that only read it."""
    return acceptance_host(tmp_path_factory.mktemp("host"))


@pytest.fixture
def fresh_host(tmp_path: Path) -> SampleHost:
    """The acceptance host for a test that changes it."""
    return acceptance_host(tmp_path / "host")


def test_read_function_sees_a_vf_with_its_pf_group_and_root(host: SampleHost) -> None:
    """A VF reads back with its PF, own group, NUMA node, PCIe root and override."""
    vf = read_function(HostRoot(host.root), host.vfio_vfs[0])
    assert (vf.vendor, vf.device, vf.driver) == ("0x8086", "0x154c", "vfio-pci")
    assert (vf.physfn, vf.iommu_group, vf.numa_node) == (host.pf, 41, 1)
    assert (vf.pcie_root, vf.driver_override) == ("pci0000:3a", "vfio-pci")


def test_read_function_sees_the_pf_with_its_vfs_and_netdev(host: SampleHost) -> None:
    """The PF reads back with its VFs in index order and its interface."""
    pf = read_function(HostRoot(host.root), host.pf)
    assert pf.virtfns == host.vfs
    assert (pf.total_vfs, pf.netdevs) == (64, ("ens1f0",))


def test_read_function_follows_a_kernel_rebind(fresh_host: SampleHost) -> None:
    """After the fake kernel moves the NVMe to vfio-pci, the reader sees the new driver."""
    kernel = FakeKernel(fresh_host.root)
    kernel.write(f"/sys/bus/pci/devices/{fresh_host.nvme}/driver/unbind", fresh_host.nvme)
    kernel.write(f"/sys/bus/pci/devices/{fresh_host.nvme}/driver_override", "vfio-pci")
    kernel.write("/sys/bus/pci/drivers/vfio-pci/bind", fresh_host.nvme)
    nvme = read_function(HostRoot(fresh_host.root), fresh_host.nvme)
    assert (nvme.driver, nvme.iommu_group, nvme.pcie_root) == ("vfio-pci", 12, "pci0000:00")


def test_list_usb_sees_the_three_devices_and_no_hubs(host: SampleHost) -> None:
    """Root hubs and interfaces are skipped; the sticks differ only by port, devnum and serial."""
    devices = {device.port: device for device in list_usb(HostRoot(host.root))}
    assert sorted(devices) == ["1-1", "2-3", "2-4"]
    assert devices["1-1"].serial == ""
    assert devices["2-4"].node == "/dev/bus/usb/002/005"
    assert devices["2-3"].vendor == devices["2-4"].vendor == "0781"
