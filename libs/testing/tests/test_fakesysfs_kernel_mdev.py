"""FakeKernel creates and removes mediated devices the way the mdev core does."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from hostdev_sysfs import HostRoot
from hostdev_testing.fakesysfs import FakeKernel, FakeSysfs, MdevType, snapshot

TYPES = "/sys/class/mdev_bus/0000:00:02.0/mdev_supported_types"
V5_4 = f"{TYPES}/i915-GVTg_V5_4"
UUIDS = (
    "4b20d080-1b54-4048-85b3-a6a62d165c01",
    "4b20d080-1b54-4048-85b3-a6a62d165c02",
    "4b20d080-1b54-4048-85b3-a6a62d165c03",
)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """Just the acceptance host's iGPU with its two GVT-g types: mdev tests need nothing else."""
    sysfs = FakeSysfs(tmp_path / "host")
    sysfs.pci(
        "0000:00:02.0",
        vendor=0x8086,
        device=0x3E92,
        class_code=0x030000,
        driver="i915",
        iommu_group=1,
    )
    types = [MdevType("i915-GVTg_V5_4", "GVTg_V5_4", 2), MdevType("i915-GVTg_V5_8", "GVTg_V5_8", 4)]
    sysfs.mdev_parent("0000:00:02.0", types)
    return sysfs.root


@pytest.fixture
def kernel(host: Path) -> FakeKernel:
    """A fake kernel over the host."""
    return FakeKernel(host)


@pytest.fixture
def root(host: Path) -> HostRoot:
    """A reader of the host."""
    return HostRoot(host)


def _errno_of(kernel: FakeKernel, host_path: str, data: str) -> int | None:
    """The errno the write fails with, or None if it succeeds."""
    try:
        kernel.write(host_path, data)
    except OSError as error:
        return error.errno
    return None


def test_create_lowers_available_instances(kernel: FakeKernel, root: HostRoot) -> None:
    """Each instance takes one slot of its type."""
    kernel.write(f"{V5_4}/create", UUIDS[0])
    assert root.read_text(f"{V5_4}/available_instances") == "1"
    assert root.read_text(f"{TYPES}/i915-GVTg_V5_8/available_instances") == "4"


def test_create_adds_the_bus_link_and_a_group_node(kernel: FakeKernel, root: HostRoot) -> None:
    """The new mdev appears on the mdev bus with its own group and /dev/vfio/<M>."""
    kernel.write(f"{V5_4}/create", UUIDS[0])
    bus_link = f"/sys/bus/mdev/devices/{UUIDS[0]}"
    assert (
        os.readlink(root.path(bus_link)) == f"../../../devices/pci0000:00/0000:00:02.0/{UUIDS[0]}"
    )
    group = root.readlink_name(f"{bus_link}/iommu_group")
    assert group is not None
    assert root.exists(f"/dev/vfio/{group}")
    assert root.glob(f"/sys/kernel/iommu_groups/{group}/devices/*") == [
        f"/sys/kernel/iommu_groups/{group}/devices/{UUIDS[0]}"
    ]


def test_create_lays_out_the_instance_like_the_kernel(kernel: FakeKernel, root: HostRoot) -> None:
    """mdev_type, driver, subsystem and the type's devices entry have the kernel's targets."""
    kernel.write(f"{V5_4}/create", UUIDS[0])
    inst = f"/sys/devices/pci0000:00/0000:00:02.0/{UUIDS[0]}"
    assert os.readlink(root.path(f"{inst}/mdev_type")) == "../mdev_supported_types/i915-GVTg_V5_4"
    assert os.readlink(root.path(f"{inst}/driver")) == "../../../../bus/mdev/drivers/vfio_mdev"
    assert os.readlink(root.path(f"{inst}/subsystem")) == "../../../../bus/mdev"
    assert os.readlink(root.path(f"{V5_4}/devices/{UUIDS[0]}")) == f"../../../{UUIDS[0]}"
    assert "MDEV_TYPE=i915-GVTg_V5_4" in root.read_text(f"{inst}/uevent").splitlines()


def test_two_mdevs_get_different_groups(kernel: FakeKernel, root: HostRoot) -> None:
    """Every mdev has an IOMMU group of its own."""
    kernel.write(f"{V5_4}/create", UUIDS[0])
    kernel.write(f"{V5_4}/create", UUIDS[1])
    groups = {root.readlink_name(f"/sys/bus/mdev/devices/{u}/iommu_group") for u in UUIDS[:2]}
    assert len(groups) == 2


def test_third_create_on_a_two_instance_type_is_enospc(kernel: FakeKernel, root: HostRoot) -> None:
    """A type with no instances left refuses creation and creates nothing."""
    kernel.write(f"{V5_4}/create", UUIDS[0])
    kernel.write(f"{V5_4}/create", UUIDS[1])
    assert _errno_of(kernel, f"{V5_4}/create", UUIDS[2]) == errno.ENOSPC
    assert not root.exists(f"/sys/bus/mdev/devices/{UUIDS[2]}")


def test_malformed_uuid_is_einval(kernel: FakeKernel) -> None:
    """create parses the UUID first."""
    assert _errno_of(kernel, f"{V5_4}/create", "not-a-uuid") == errno.EINVAL


def test_existing_uuid_is_eexist_even_on_another_type(kernel: FakeKernel) -> None:
    """UUIDs are unique across all mdevs."""
    kernel.write(f"{V5_4}/create", UUIDS[0])
    assert _errno_of(kernel, f"{TYPES}/i915-GVTg_V5_8/create", UUIDS[0]) == errno.EEXIST


def test_upper_case_uuid_is_listed_in_lower_case(kernel: FakeKernel, root: HostRoot) -> None:
    """The kernel prints UUIDs in lower case whatever case was written."""
    kernel.write(f"{V5_4}/create", UUIDS[0].upper() + "\n")
    assert root.exists(f"/sys/bus/mdev/devices/{UUIDS[0]}")


def test_remove_restores_the_tree_exactly(host: Path, kernel: FakeKernel) -> None:
    """Create then remove leaves the tree as it was, available_instances included."""
    before = snapshot(host)
    kernel.write(f"{V5_4}/create", UUIDS[0])
    kernel.write(f"/sys/bus/mdev/devices/{UUIDS[0]}/remove", "1")
    assert snapshot(host) == before


def test_remove_frees_a_slot_for_a_new_instance(kernel: FakeKernel, root: HostRoot) -> None:
    """After removal a full type accepts another instance."""
    kernel.write(f"{V5_4}/create", UUIDS[0])
    kernel.write(f"{V5_4}/create", UUIDS[1])
    kernel.write(f"/sys/bus/mdev/devices/{UUIDS[0]}/remove", "1")
    kernel.write(f"{V5_4}/create", UUIDS[2])
    assert root.read_text(f"{V5_4}/available_instances") == "0"


def test_busy_mdev_cannot_be_removed_until_released(kernel: FakeKernel, root: HostRoot) -> None:
    """busy() makes remove EBUSY and keeps the mdev; release() lets removal through."""
    kernel.write(f"{V5_4}/create", UUIDS[0])
    remove = f"/sys/bus/mdev/devices/{UUIDS[0]}/remove"
    kernel.busy(UUIDS[0])
    assert _errno_of(kernel, remove, "1") == errno.EBUSY
    assert root.exists(f"/sys/bus/mdev/devices/{UUIDS[0]}")
    kernel.release(UUIDS[0])
    kernel.write(remove, "1")
    assert not root.exists(f"/sys/bus/mdev/devices/{UUIDS[0]}")


def test_refused_create_makes_nothing(host: Path, kernel: FakeKernel) -> None:
    """An injected error on create leaves the tree untouched."""
    before = snapshot(host)
    kernel.refuse(f"{V5_4}/create", errno.EIO)
    assert _errno_of(kernel, f"{V5_4}/create", UUIDS[0]) == errno.EIO
    assert snapshot(host) == before


def test_writing_zero_to_remove_keeps_the_mdev(kernel: FakeKernel, root: HostRoot) -> None:
    """remove acts only on a non-zero value."""
    kernel.write(f"{V5_4}/create", UUIDS[0])
    kernel.write(f"/sys/bus/mdev/devices/{UUIDS[0]}/remove", "0")
    assert root.exists(f"/sys/bus/mdev/devices/{UUIDS[0]}")


def test_available_instances_is_never_read_half_written(kernel: FakeKernel, root: HostRoot) -> None:
    """sysfs computes an attribute's text whole on each read: a driver reading
    available_instances while another thread creates or removes an instance sees the old or
    the new count, never the empty file between a truncation and a write (which a driver
    takes for "no instance left" and refuses a free one)."""
    finished = threading.Event()
    seen: set[str] = set()

    def read_until_finished() -> None:
        while not finished.is_set():
            seen.add(root.read_text(f"{V5_4}/available_instances").strip())

    reader = threading.Thread(target=read_until_finished)
    reader.start()
    try:
        for _ in range(30):
            kernel.write(f"{V5_4}/create", UUIDS[0])
            kernel.write(f"/sys/bus/mdev/devices/{UUIDS[0]}/remove", "1")
    finally:
        finished.set()
        reader.join()
    assert seen <= {"1", "2"}, seen
    assert seen
