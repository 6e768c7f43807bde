"""IOMMU groups: a function is offered only with its whole group, or by explicit opt-in."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from hostdev_devconfig import PciSelector, SriovSelector
from hostdev_events.alloc import group_entry
from hostdev_events.plans import PciPlan
from hostdev_families import FamilyError
from hostdev_families.pci import GROUP_COUNTER, IommuGroupShared, PciFamily
from hostdev_families.sriov import SriovFamily
from hostdev_sysfs import HostRoot, ReadOnlyWriter
from hostdev_testing.fakenetlink import FakeNetlink
from hostdev_testing.fakesysfs import SampleHost, acceptance_host

NVME = "pci-0000-01-00-0"
AHCI = "pci-0000-01-00-1"


def _pci(sample: SampleHost, *selectors: PciSelector) -> PciFamily:
    return PciFamily(HostRoot(sample.root), ReadOnlyWriter(), selectors)


def _stranger(sample: SampleHost, bdf: str, group: int) -> None:
    """A USB controller joining `group`, on its own driver (no one selects it)."""
    sample.sysfs.pci(
        bdf, vendor=0x1B21, device=0x2142, class_code=0x0C0330, driver="xhci_hcd", iommu_group=group
    )


def test_function_sharing_its_group_with_an_unselected_one_is_not_offered(
    tmp_path: Path,
) -> None:
    """The NVMe is selected, its AHCI sibling is not: the NVMe is left out with a reason
    naming the sibling and its driver, and the way to opt in."""
    sample = acceptance_host(tmp_path)
    survey = _pci(sample, PciSelector(vendor="144d")).survey()
    assert survey.offered == []
    (shared,) = [n for n in survey.not_offered if n.candidate == sample.nvme]
    assert shared.code == "iommu-group-shared"
    assert f"{sample.nvme_sibling} (ahci)" in shared.reason
    assert "wholeGroup" in shared.reason


def test_whole_group_opt_in_offers_the_function_without_a_counter(tmp_path: Path) -> None:
    """With the opt-in the NVMe is offered alone (the AHCI is no device of ours): it holds the
    group in the ledger and needs no counter, since no other offered function shares it."""
    sample = acceptance_host(tmp_path)
    (nvme,) = _pci(sample, PciSelector(vendor="144d", whole_group=True)).survey().offered
    assert nvme.name == NVME
    assert nvme.also_holds == (group_entry(sample.nvme_group),)
    assert nvme.consumes == ()


def test_functions_of_one_group_selected_together_share_a_group_counter(tmp_path: Path) -> None:
    """NVMe and AHCI both selected: both offered, each consuming the whole of one counter
    set named after the group, so no two allocations can take functions of one group."""
    sample = acceptance_host(tmp_path)
    devices = _pci(sample, PciSelector(address="0000:01:00.*")).survey().offered
    assert [d.name for d in devices] == [NVME, AHCI]
    for device in devices:
        (use,) = device.consumes
        assert (use.counter_set, use.counter, use.value, use.capacity) == (
            f"iommu-group-{sample.nvme_group}",
            GROUP_COUNTER,
            1,
            1,
        )


def test_plan_refuses_a_function_that_joined_the_group_after_discovery(tmp_path: Path) -> None:
    """A third function hot-plugged into group 12 after discovery: plan refuses with a typed
    error naming it, before any write."""
    sample = acceptance_host(tmp_path)
    family = _pci(sample, PciSelector(address="0000:01:00.*"))
    (nvme, _ahci) = family.survey().offered
    _stranger(sample, "0000:05:00.0", sample.nvme_group)
    with pytest.raises(IommuGroupShared, match=r"0000:05:00\.0 \(xhci_hcd\)"):
        family.plan(nvme, "uid", {})


def test_plan_with_the_opt_in_records_every_member_to_move_and_restore(tmp_path: Path) -> None:
    """With `wholeGroup`, the plan lists the unselected sibling with its driver, so
    unprepare can bring it back."""
    sample = acceptance_host(tmp_path)
    family = _pci(sample, PciSelector(vendor="144d", whole_group=True))
    (nvme,) = family.survey().offered
    plan = family.plan(nvme, "uid", {})
    assert isinstance(plan, PciPlan)
    assert [m.address for m in plan.members] == [sample.nvme, sample.nvme_sibling]
    assert plan.members[1].driver == "ahci"


def test_vfio_mode_vf_sharing_its_group_is_not_offered_and_netdevice_vf_cannot_go_vfio(
    tmp_path: Path,
) -> None:
    """A function nobody offers joins VF 2's group: in vfio mode that VF is not offered; in
    netdevice mode it is, but a claim asking for vfio mode is refused at plan."""
    sample = acceptance_host(tmp_path)
    vf2, group = sample.vfs[2], sample.vf_groups[2]
    _stranger(sample, "0000:05:00.0", group)
    netlink = FakeNetlink(sample.root)
    root, writer = HostRoot(sample.root), ReadOnlyWriter()
    vfio = SriovFamily(root, writer, netlink, (SriovSelector(pf=sample.pf),)).survey()
    assert vf2 not in {d.params["address"] for d in vfio.offered}
    assert len(vfio.offered) == 3
    (shared,) = [n for n in vfio.not_offered if n.candidate == vf2]
    assert shared.code == "iommu-group-shared"
    netdev = SriovFamily(root, writer, netlink, (SriovSelector(pf=sample.pf, mode="netdevice"),))
    (device,) = [d for d in netdev.survey().offered if d.params["address"] == vf2]
    with pytest.raises(IommuGroupShared):
        netdev.plan(device, "uid", {"mode": "vfio"})


def test_plan_of_a_function_gone_since_discovery_is_a_clear_error(tmp_path: Path) -> None:
    """A function removed (hot-unplugged) after discovery gives a FamilyError naming it."""
    sample = acceptance_host(tmp_path)
    family = _pci(sample, PciSelector(vendor="144d", whole_group=True))
    (nvme,) = family.survey().offered
    gone = msgspec.structs.replace(nvme, params={**nvme.params, "address": "0000:09:00.0"})
    with pytest.raises(FamilyError, match=r"0000:09:00\.0 is gone"):
        family.plan(gone, "uid", {})
