"""FakeKernel binds and unbinds PCI functions the way the kernel does, errors included."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from hostdev_sysfs import HostRoot, SysfsWriter
from hostdev_testing.fakesysfs import FakeKernel, FakeSysfs, SampleHost, acceptance_host, snapshot

NVME = "0000:01:00.0"
SIBLING = "0000:01:00.1"
DEV = f"/sys/bus/pci/devices/{NVME}"
VFIO_BIND = "/sys/bus/pci/drivers/vfio-pci/bind"
PROBE = "/sys/bus/pci/drivers_probe"


@pytest.fixture
def host(tmp_path: Path) -> SampleHost:
    """The acceptance host in a fresh directory."""
    return acceptance_host(tmp_path / "host")


@pytest.fixture
def kernel(host: SampleHost) -> FakeKernel:
    """A fake kernel over the acceptance host."""
    return FakeKernel(host.root)


@pytest.fixture
def root(host: SampleHost) -> HostRoot:
    """A reader of the acceptance host."""
    return HostRoot(host.root)


def _to_vfio(kernel: SysfsWriter, bdf: str) -> None:
    kernel.write(f"/sys/bus/pci/devices/{bdf}/driver/unbind", bdf)
    kernel.write(f"/sys/bus/pci/devices/{bdf}/driver_override", "vfio-pci")
    kernel.write(VFIO_BIND, bdf)


def _back_to_host(kernel: SysfsWriter, bdf: str) -> None:
    kernel.write("/sys/bus/pci/drivers/vfio-pci/unbind", bdf)
    kernel.write(f"/sys/bus/pci/devices/{bdf}/driver_override", "\n")
    kernel.write(PROBE, bdf)


def _errno_of(kernel: FakeKernel, host_path: str, data: str) -> int | None:
    """The errno the write fails with, or None if it succeeds."""
    try:
        kernel.write(host_path, data)
    except OSError as error:
        return error.errno
    return None


def test_unbind_override_bind_moves_the_function_to_vfio_pci(
    kernel: FakeKernel, root: HostRoot
) -> None:
    """The documented bind sequence moves the driver link and creates /dev/vfio/<group>."""
    _to_vfio(kernel, NVME)
    assert root.readlink_name(f"{DEV}/driver") == "vfio-pci"
    assert os.readlink(root.path(f"{DEV}/driver")) == "../../../../bus/pci/drivers/vfio-pci"
    assert root.exists(f"/sys/bus/pci/drivers/vfio-pci/{NVME}")
    assert not root.exists(f"/sys/bus/pci/drivers/nvme/{NVME}")
    assert root.exists("/dev/vfio/12")
    assert root.read_text(f"{DEV}/uevent").startswith("DRIVER=vfio-pci\n")


def test_bind_to_vfio_pci_creates_an_iommufd_cdev(kernel: FakeKernel, root: HostRoot) -> None:
    """vfio-pci adds vfio-dev/vfio<N> with the lowest free N and its /dev/vfio/devices node."""
    _to_vfio(kernel, NVME)
    assert root.glob(f"{DEV}/vfio-dev/*") == [f"{DEV}/vfio-dev/vfio2"]
    assert root.read_text(f"{DEV}/vfio-dev/vfio2/dev") == "511:2"
    assert root.exists("/dev/vfio/devices/vfio2")


def test_drivers_probe_after_clearing_override_returns_the_native_driver(
    kernel: FakeKernel, root: HostRoot
) -> None:
    """Clearing the override and probing rebinds nvme and removes /dev/vfio/<group>."""
    _to_vfio(kernel, NVME)
    _back_to_host(kernel, NVME)
    assert root.readlink_name(f"{DEV}/driver") == "nvme"
    assert root.read_text(f"{DEV}/driver_override") == "(null)"
    assert not root.exists("/dev/vfio/12")
    assert not root.exists("/dev/vfio/devices/vfio2")


def test_bind_unbind_round_trip_restores_the_tree_exactly(
    host: SampleHost, kernel: FakeKernel
) -> None:
    """Prepare-like and unprepare-like writes leave no trace."""
    before = snapshot(host.root)
    _to_vfio(kernel, NVME)
    assert snapshot(host.root) != before
    _back_to_host(kernel, NVME)
    assert snapshot(host.root) == before


def test_netdev_vf_round_trip_brings_its_interface_back(
    host: SampleHost, kernel: FakeKernel, root: HostRoot
) -> None:
    """An iavf VF loses its netdev on vfio-pci and regains the same one afterwards."""
    before = snapshot(host.root)
    _to_vfio(kernel, "0000:3b:02.2")
    assert not root.exists("/sys/class/net/ens1f0v2")
    _back_to_host(kernel, "0000:3b:02.2")
    assert snapshot(host.root) == before


def test_bind_when_already_bound_is_ebusy(kernel: FakeKernel) -> None:
    """A matching driver cannot bind a function that already has a driver."""
    kernel.write(f"{DEV}/driver_override", "vfio-pci")
    assert _errno_of(kernel, VFIO_BIND, NVME) == errno.EBUSY


def test_vfio_pci_without_override_does_not_match(kernel: FakeKernel) -> None:
    """vfio-pci has no ID table, so binding without an override is ENODEV."""
    kernel.write(f"{DEV}/driver/unbind", NVME)
    assert _errno_of(kernel, VFIO_BIND, NVME) == errno.ENODEV


def test_override_keeps_other_drivers_from_binding(kernel: FakeKernel) -> None:
    """With driver_override set only that driver may bind, even the native one is ENODEV."""
    kernel.write(f"{DEV}/driver/unbind", NVME)
    kernel.write(f"{DEV}/driver_override", "vfio-pci")
    assert _errno_of(kernel, "/sys/bus/pci/drivers/nvme/bind", NVME) == errno.ENODEV


def test_unbind_from_a_driver_not_bound_is_enodev(kernel: FakeKernel) -> None:
    """Writing a BDF to another driver's unbind is refused."""
    assert _errno_of(kernel, "/sys/bus/pci/drivers/ahci/unbind", NVME) == errno.ENODEV


def test_unbind_path_of_an_unbound_function_does_not_exist(kernel: FakeKernel) -> None:
    """Once unbound, <bdf>/driver/unbind is gone, so writing it is ENOENT."""
    kernel.write(f"{DEV}/driver/unbind", NVME)
    assert _errno_of(kernel, f"{DEV}/driver/unbind", NVME) == errno.ENOENT


def test_drivers_probe_binds_to_the_override(kernel: FakeKernel, root: HostRoot) -> None:
    """drivers_probe on an unbound function with an override binds the override's driver."""
    kernel.write(f"{DEV}/driver/unbind", NVME)
    kernel.write(f"{DEV}/driver_override", "vfio-pci\n")
    kernel.write(PROBE, f"{NVME}\n")
    assert root.readlink_name(f"{DEV}/driver") == "vfio-pci"


def test_drivers_probe_leaves_a_bound_function_alone(host: SampleHost, kernel: FakeKernel) -> None:
    """Probing a function that has a driver changes nothing."""
    before = snapshot(host.root)
    kernel.write(f"{DEV}/driver_override", "vfio-pci")
    kernel.write(PROBE, NVME)
    kernel.write(f"{DEV}/driver_override", "\n")
    assert snapshot(host.root) == before


def test_driver_override_nul_clears_it(kernel: FakeKernel, root: HostRoot) -> None:
    """A lone NUL clears the override just as a newline does."""
    kernel.write(f"{DEV}/driver_override", "vfio-pci")
    kernel.write(f"{DEV}/driver_override", "\0")
    assert root.read_text(f"{DEV}/driver_override") == "(null)"


def test_group_with_a_sibling_on_a_host_driver_is_not_viable(
    kernel: FakeKernel, root: HostRoot
) -> None:
    """Binding one function of a shared group succeeds, but the group only becomes viable with both."""
    _to_vfio(kernel, NVME)
    assert root.readlink_name(f"{DEV}/driver") == "vfio-pci"
    assert not kernel.group_viable(12)
    _to_vfio(kernel, SIBLING)
    assert kernel.group_viable(12)


def test_group_node_stays_while_any_member_is_on_vfio(kernel: FakeKernel, root: HostRoot) -> None:
    """/dev/vfio/<group> goes away only when the last member leaves vfio-pci."""
    _to_vfio(kernel, NVME)
    _to_vfio(kernel, SIBLING)
    _back_to_host(kernel, NVME)
    assert root.exists("/dev/vfio/12")
    _back_to_host(kernel, SIBLING)
    assert not root.exists("/dev/vfio/12")


def test_vfio_pci_refuses_a_bridge(kernel: FakeKernel) -> None:
    """vfio-pci's probe rejects type 1 headers with EINVAL."""
    port = "0000:00:1c.0"
    kernel.write(f"/sys/bus/pci/devices/{port}/driver/unbind", port)
    kernel.write(f"/sys/bus/pci/devices/{port}/driver_override", "vfio-pci")
    assert _errno_of(kernel, VFIO_BIND, port) == errno.EINVAL


def test_writing_a_missing_path_is_enoent(kernel: FakeKernel) -> None:
    """Attributes that do not exist cannot be written."""
    assert (
        _errno_of(kernel, "/sys/bus/pci/devices/0000:09:00.0/driver_override", "x") == errno.ENOENT
    )


@pytest.mark.parametrize(
    "host_path",
    [
        f"{DEV}/vendor",
        f"{DEV}/class",
        "/sys/class/mdev_bus/0000:00:02.0/mdev_supported_types/i915-GVTg_V5_4/available_instances",
    ],
)
def test_writing_a_read_only_attribute_is_eacces(kernel: FakeKernel, host_path: str) -> None:
    """Attributes without a store method refuse writes."""
    assert _errno_of(kernel, host_path, "1") == errno.EACCES


def test_changing_sriov_numvfs_is_unsupported(kernel: FakeKernel) -> None:
    """VF creation is not modelled and says so; rewriting the current count is a no-op."""
    numvfs = "/sys/bus/pci/devices/0000:3b:00.0/sriov_numvfs"
    kernel.write(numvfs, "4")
    assert _errno_of(kernel, numvfs, "8") == errno.EOPNOTSUPP


def test_refuse_fails_only_the_next_write(kernel: FakeKernel, root: HostRoot) -> None:
    """An injected errno hits one write; the retry goes through."""
    kernel.refuse(f"{DEV}/driver_override", errno.EIO)
    assert _errno_of(kernel, f"{DEV}/driver_override", "vfio-pci") == errno.EIO
    assert root.read_text(f"{DEV}/driver_override") == "(null)"
    kernel.write(f"{DEV}/driver_override", "vfio-pci")
    assert root.read_text(f"{DEV}/driver_override") == "vfio-pci"


def test_refuse_matches_the_same_file_through_links(kernel: FakeKernel) -> None:
    """Refusing drivers/nvme/unbind also refuses writes via <bdf>/driver/unbind."""
    kernel.refuse("/sys/bus/pci/drivers/nvme/unbind", errno.EINTR)
    assert _errno_of(kernel, f"{DEV}/driver/unbind", NVME) == errno.EINTR


def test_busy_function_cannot_be_unbound_until_released(kernel: FakeKernel, root: HostRoot) -> None:
    """busy() makes unbind EBUSY; release() lets it through."""
    kernel.busy(NVME)
    assert _errno_of(kernel, f"{DEV}/driver/unbind", NVME) == errno.EBUSY
    kernel.release(NVME)
    kernel.write(f"{DEV}/driver/unbind", NVME)
    assert root.readlink_name(f"{DEV}/driver") is None


def test_writes_records_every_attempt_in_order(kernel: FakeKernel) -> None:
    """The write log lists successful and refused writes alike."""
    assert _errno_of(kernel, VFIO_BIND, NVME) == errno.ENODEV
    kernel.write(f"{DEV}/driver_override", "vfio-pci")
    assert kernel.writes == [(VFIO_BIND, NVME), (f"{DEV}/driver_override", "vfio-pci")]


def test_fake_kernel_reads_native_drivers_recorded_by_the_builder(
    host: SampleHost, root: HostRoot
) -> None:
    """A FakeKernel made later from the root alone still knows each function's native driver."""
    FakeKernel(host.root).write(f"{DEV}/driver/unbind", NVME)
    FakeKernel(host.root).write(PROBE, NVME)
    assert root.readlink_name(f"{DEV}/driver") == "nvme"


def test_new_id_is_refused_as_not_modelled(kernel: FakeKernel) -> None:
    """Dynamic IDs are not modelled, so new_id fails loudly instead of silently doing nothing."""
    assert (
        _errno_of(kernel, "/sys/bus/pci/drivers/vfio-pci/new_id", "144d a808") == errno.EOPNOTSUPP
    )


def test_links_still_resolve_after_binding_to_vfio_pci(
    host: SampleHost, kernel: FakeKernel
) -> None:
    """The kernel's reactions leave no dangling link behind."""
    _to_vfio(kernel, NVME)
    _to_vfio(kernel, "0000:3b:02.3")
    links = [Path(d) / n for d, ds, fs in os.walk(host.root) for n in ds + fs]
    assert all(os.path.exists(link) for link in links if link.is_symlink())


def test_drivers_probe_without_override_or_native_driver_binds_nothing(tmp_path: Path) -> None:
    """A function no loaded driver claims stays unbound after drivers_probe."""
    sysfs = FakeSysfs(tmp_path)
    sysfs.pci_driver("vfio-pci")
    sysfs.pci("0000:07:00.0", vendor=0x1234, device=0x5678, class_code=0xFF0000, iommu_group=3)
    FakeKernel(tmp_path).write(PROBE, "0000:07:00.0")
    assert not (tmp_path / "sys/bus/pci/devices/0000:07:00.0/driver").exists()
