"""PCI passthrough on the fake kernel: what discovery publishes, prepare and its exact undo."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from hostdev_devconfig import PciSelector
from hostdev_events.inventory import Attribute, Device
from hostdev_families import FamilyError, HostRefused
from hostdev_families.pci import PciFamily
from hostdev_sysfs import HostRoot
from hostdev_testing.fakesysfs import FakeKernel, SampleHost, acceptance_host, snapshot


@pytest.fixture
def sample(tmp_path: Path) -> SampleHost:
    return acceptance_host(tmp_path / "root")


def _family(sample: SampleHost, kernel: FakeKernel) -> PciFamily:
    # Both functions of group 12 selected: the group can go to vfio-pci without a stranger.
    return PciFamily(HostRoot(sample.root), kernel, (PciSelector(address="0000:01:00.*"),))


def _nvme(family: PciFamily) -> Device:
    (nvme,) = [d for d in family.discover() if d.name == "pci-0000-01-00-0"]
    return nvme


def _driver(sample: SampleHost, address: str) -> str | None:
    link = sample.root / f"sys/bus/pci/devices/{address}/driver"
    return link.resolve().name if link.is_symlink() else None


def test_discovery_publishes_the_functions_identity_placement_and_driver(
    sample: SampleHost,
) -> None:
    """The NVMe is published with its IDs, class, IOMMU group, NUMA node and host driver as
    sysfs shows them, and hands over the VFIO nodes of its group."""
    nvme = _nvme(_family(sample, FakeKernel(sample.root)))
    assert {k: nvme.attributes[k] for k in ("family", "vendorID", "deviceID", "classCode")} == {
        "family": Attribute(string="pci"),
        "vendorID": Attribute(string="144d"),
        "deviceID": Attribute(string="a808"),
        "classCode": Attribute(string="010802"),
    }
    assert nvme.attributes["resource.kubernetes.io/pciBusID"] == Attribute(string=sample.nvme)
    assert nvme.attributes["iommuGroup"] == Attribute(int_=sample.nvme_group)
    assert nvme.attributes["numaNode"] == Attribute(int_=0)
    assert nvme.attributes["hostDriver"] == Attribute(string="nvme")
    assert [n.path for n in nvme.edits.device_nodes] == [
        "/dev/vfio/vfio",
        f"/dev/vfio/{sample.nvme_group}",
    ]


def test_prepare_moves_the_whole_group_to_vfio_and_unprepare_restores_the_tree_exactly(
    sample: SampleHost,
) -> None:
    """Apply binds the NVMe and its group sibling to vfio-pci; unprepare puts both back on
    their drivers, leaving the tree byte for byte as it was; a second unprepare is a no-op."""
    kernel = FakeKernel(sample.root)
    family = _family(sample, kernel)
    before = snapshot(sample.root)
    applied = family.apply(family.plan(_nvme(family), "claim-1", {}))
    assert (_driver(sample, sample.nvme), _driver(sample, sample.nvme_sibling)) == (
        "vfio-pci",
        "vfio-pci",
    )
    assert (sample.root / f"dev/vfio/{sample.nvme_group}").exists()
    family.unprepare(applied)
    assert snapshot(sample.root) == before
    writes = len(kernel.writes)
    family.unprepare(applied)
    assert len(kernel.writes) == writes
    assert snapshot(sample.root) == before


def test_a_refused_second_member_puts_back_the_first_and_says_why(sample: SampleHost) -> None:
    """The kernel refuses to move the group's second function: HostRefused names the errno,
    and the NVMe, already on vfio-pci, is back on nvme, so nothing is left half-done."""
    kernel = FakeKernel(sample.root)
    family = _family(sample, kernel)
    before = snapshot(sample.root)
    plan = family.plan(_nvme(family), "claim-1", {})
    kernel.refuse(f"/sys/bus/pci/devices/{sample.nvme_sibling}/driver_override", errno.EBUSY)
    with pytest.raises(HostRefused, match="EBUSY"):
        family.apply(plan)
    assert snapshot(sample.root) == before


def test_unprepare_refused_while_the_device_is_busy_succeeds_once_released(
    sample: SampleHost,
) -> None:
    """A function still held (QEMU has it open) cannot leave vfio-pci: unprepare fails with a
    FamilyError, and the retry after release restores the tree."""
    kernel = FakeKernel(sample.root)
    family = _family(sample, kernel)
    before = snapshot(sample.root)
    applied = family.apply(family.plan(_nvme(family), "claim-1", {}))
    kernel.busy(sample.nvme)
    with pytest.raises(FamilyError, match=sample.nvme):
        family.unprepare(applied)
    kernel.release(sample.nvme)
    family.unprepare(applied)
    assert snapshot(sample.root) == before


def test_configuration_for_a_pci_function_is_refused_before_any_write(sample: SampleHost) -> None:
    """A PCI function takes no opaque parameters: any key is an error naming it, and the
    kernel saw no write."""
    kernel = FakeKernel(sample.root)
    family = _family(sample, kernel)
    with pytest.raises(FamilyError, match="takes no configuration"):
        family.plan(_nvme(family), "claim-1", {"vlan": 5})
    assert kernel.writes == []


def test_a_refused_vfio_bind_after_the_unbind_puts_the_function_back_on_its_driver(
    sample: SampleHost,
) -> None:
    """The kernel refuses the vfio-pci bind of the group's first function after it left nvme:
    the rollback puts that function back on nvme with its old driver_override (it must not
    stay driverless), HostRefused names the device and the errno, and the tree is as before."""
    kernel = FakeKernel(sample.root)
    family = _family(sample, kernel)
    before = snapshot(sample.root)
    plan = family.plan(_nvme(family), "claim-1", {})
    kernel.refuse("/sys/bus/pci/drivers/vfio-pci/bind", errno.ENODEV)
    with pytest.raises(HostRefused, match="ENODEV") as refused:
        family.apply(plan)
    assert refused.value.device == plan.device
    assert _driver(sample, sample.nvme) == "nvme"
    assert snapshot(sample.root) == before


def test_a_refused_rollback_is_reported_with_the_refused_apply(sample: SampleHost) -> None:
    """The bind is refused and the kernel then refuses to put the function back too: the
    error names both, so an operator learns the host was left changed."""
    kernel = FakeKernel(sample.root)
    family = _family(sample, kernel)
    plan = family.plan(_nvme(family), "claim-1", {})
    kernel.refuse("/sys/bus/pci/drivers/vfio-pci/bind", errno.ENODEV)
    kernel.refuse("/sys/bus/pci/drivers_probe", errno.EIO)
    with pytest.raises(HostRefused, match=r"ENODEV.*rollback.*EIO") as refused:
        family.apply(plan)
    assert refused.value.device == plan.device
