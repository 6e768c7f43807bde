"""Every family's survey: what it offers, and each candidate it leaves out with a reason."""

from __future__ import annotations

from pathlib import Path

import msgspec

from hostdev_devconfig import HostPathSpec, MdevSelector, SriovSelector, UsbSelector
from hostdev_events.inventory import InventorySnapshot, NotOffered
from hostdev_families import NOT_SELECTED
from hostdev_families.hostpath import HostPathFamily
from hostdev_families.mdev import MdevFamily
from hostdev_families.sriov import SriovFamily
from hostdev_families.usb import UsbFamily
from hostdev_sysfs import HostRoot, ReadOnlyWriter
from hostdev_testing.fakenetlink import FakeNetlink
from hostdev_testing.fakesysfs import acceptance_host


def _codes(items: list[NotOffered]) -> dict[str, str]:
    return {n.candidate: n.code for n in items}


def test_hostpath_survey_names_missing_paths_and_paths_outside_the_root(tmp_path: Path) -> None:
    """A path that does not exist, a glob matching nothing and a `..` path are listed with
    their codes; what exists is offered, and discover returns exactly the offered devices."""
    sample = acceptance_host(tmp_path)
    family = HostPathFamily(
        HostRoot(sample.root),
        (
            HostPathSpec(path="/dev/kvm", name="kvm"),
            HostPathSpec(path="/dev/missing"),
            HostPathSpec(path="/dev/nothing*"),
            HostPathSpec(path="/dev/../../etc/shadow"),
        ),
    )
    survey = family.survey()
    assert [d.name for d in survey.offered] == ["kvm"]
    assert family.discover() == survey.offered
    assert _codes(survey.not_offered) == {
        "/dev/missing": "device-node-missing",
        "/dev/nothing*": "device-node-missing",
        "/dev/../../etc/shadow": "path-outside-root",
    }
    assert all(n.family == "hostpath" and n.reason for n in survey.not_offered)


def test_sriov_survey_tells_unselected_pfs_from_selected_functions_without_sriov(
    tmp_path: Path,
) -> None:
    """A selector matching only a non-SR-IOV function says so; an unselected PF is
    `not-selected`; functions that could never be PFs are not candidates at all."""
    sample = acceptance_host(tmp_path)
    nvme_only = SriovFamily(
        HostRoot(sample.root),
        ReadOnlyWriter(),
        FakeNetlink(sample.root),
        (SriovSelector(pf=sample.nvme),),
    )
    survey = nvme_only.survey()
    assert survey.offered == []
    assert _codes(survey.not_offered) == {
        sample.nvme: "not-sriov-capable",
        sample.pf: NOT_SELECTED,
    }


def test_mdev_survey_lists_types_the_selector_leaves_out(tmp_path: Path) -> None:
    """Types not named by the parent's selector are `not-selected` as parent/type."""
    sample = acceptance_host(tmp_path)
    family = MdevFamily(
        HostRoot(sample.root),
        ReadOnlyWriter(),
        (MdevSelector(parent=sample.igpu, types=("i915-GVTg_V5_4",)),),
    )
    survey = family.survey()
    assert {d.params["type"] for d in survey.offered} == {"i915-GVTg_V5_4"}
    assert _codes(survey.not_offered) == {f"{sample.igpu}/i915-GVTg_V5_8": NOT_SELECTED}


def test_mdev_survey_says_when_a_parent_offers_none_of_the_selected_types(tmp_path: Path) -> None:
    """A selector naming a type the parent does not have leaves the parent `no-mdev-types`."""
    sample = acceptance_host(tmp_path)
    family = MdevFamily(
        HostRoot(sample.root), ReadOnlyWriter(), (MdevSelector(types=("nvidia-222",)),)
    )
    survey = family.survey()
    assert survey.offered == []
    assert _codes(survey.not_offered)[sample.igpu] == "no-mdev-types"


def test_usb_survey_lists_unselected_devices_by_port(tmp_path: Path) -> None:
    """The receiver no selector matches is listed by its port."""
    sample = acceptance_host(tmp_path)
    family = UsbFamily(HostRoot(sample.root), (UsbSelector(vendor="0781"),))
    survey = family.survey()
    assert len(survey.offered) == 2
    assert _codes(survey.not_offered) == {sample.usb_receiver: NOT_SELECTED}


def test_not_offered_round_trips_and_old_snapshots_still_decode() -> None:
    """`not_offered` is optional in the inventory reply: a reply without it decodes."""
    item = NotOffered(family="pci", candidate="0000:01:00.0", reason="r", code="iommu-off")
    reply = InventorySnapshot(node="n", devices=(), not_offered=(item,))
    assert msgspec.json.decode(msgspec.json.encode(reply), type=InventorySnapshot) == reply
    old = b'{"type":"inventory.snapshot.v1","node":"n","devices":[]}'
    assert msgspec.json.decode(old, type=InventorySnapshot).not_offered == ()
