"""PCI passthrough: whole functions bound to vfio-pci together with their IOMMU group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hostdev_events.alloc import group_entry
from hostdev_events.inventory import Attribute, Device, NotOffered
from hostdev_events.state import HostUndo
from hostdev_families import pciattrs, vfio
from hostdev_families.base import NOT_SELECTED, FamilyError, HostRefused, Survey, check_config
from hostdev_families.config import PciSelector
from hostdev_sysfs import (
    HostRoot,
    PciFunction,
    SysfsWriter,
    group_members,
    list_functions,
    read_function,
)

FAMILY = "pci"


class PciFamily:
    """Selected PCI functions; prepare moves the function's whole IOMMU group to vfio-pci."""

    name = FAMILY
    blocking = True

    def __init__(
        self, root: HostRoot, writer: SysfsWriter, selectors: tuple[PciSelector, ...]
    ) -> None:
        self.root = root
        self.writer = writer
        self.selectors = selectors

    def _selected(self, function: PciFunction) -> bool:
        return any(
            pciattrs.matches(
                function, vendor=s.vendor, device=s.device, class_prefix=s.class_, address=s.address
            )
            for s in self.selectors
        )

    def discover(self) -> list[Device]:
        return self.survey().offered

    def survey(self) -> Survey:
        found = Survey()
        for address in list_functions(self.root):
            function = read_function(self.root, address)
            if function.is_bridge or function.physfn is not None:
                continue  # bridges are never offered; VFs belong to the SR-IOV family
            if not self._selected(function):
                reason = "no pci selector of the configuration matches it"
                found.not_offered.append(_not_offered(address, NOT_SELECTED, reason))
                continue
            if function.iommu_group is None:
                found.not_offered.append(no_group(self.root, FAMILY, address))
                continue
            found.offered.append(self.device(function))
        return found

    def device(self, function: PciFunction) -> Device:
        """The inventory entry of one function."""
        assert function.iommu_group is not None
        attributes = pciattrs.pci_attributes(FAMILY, function)
        if function.driver:
            attributes[pciattrs.ATTR_DRIVER] = Attribute(string=function.driver)
        return Device(
            name=pciattrs.pci_name("pci", function.address),
            family=FAMILY,
            attributes=attributes,
            edits=pciattrs.vfio_edits(self.root, function.iommu_group),
            params={"address": function.address, "group": str(function.iommu_group)},
            also_holds=(group_entry(function.iommu_group),),
        )

    def plan(self, device: Device, claim_uid: str, config: Mapping[str, Any]) -> HostUndo:
        check_config(device.name, config, None)
        return plan_group(self.root, FAMILY, device)

    def apply(self, plan: HostUndo) -> HostUndo:
        apply_group(self.root, self.writer, plan)
        return plan

    def unprepare(self, undo: HostUndo) -> None:
        restore_group(self.root, self.writer, undo)

    def healthy(self, device: Device) -> bool:
        return self.root.exists(f"/sys/bus/pci/devices/{device.params.get('address', '-')}")


def _not_offered(candidate: str, code: str, reason: str) -> NotOffered:
    return NotOffered(family=FAMILY, candidate=candidate, reason=reason, code=code)


def no_group(root: HostRoot, family: str, address: str) -> NotOffered:
    """Why a function without an IOMMU group cannot go to vfio-pci."""
    iommu = root.path("/sys/class/iommu")
    if not iommu.is_dir() or not any(iommu.iterdir()):
        return NotOffered(
            family=family,
            candidate=address,
            code="iommu-off",
            reason="the IOMMU is off on this host (boot with intel_iommu=on or amd_iommu=on)",
        )
    return NotOffered(
        family=family,
        candidate=address,
        code="no-iommu-group",
        reason="the kernel put this function in no IOMMU group, so vfio-pci cannot take it",
    )


def _members(root: HostRoot, group: int) -> list[PciFunction]:
    """PCI functions of a group that must leave their host driver (bridges stay)."""
    found = []
    for member in group_members(root, group):
        if root.exists(f"/sys/bus/pci/devices/{member}"):
            function = read_function(root, member)
            if not function.is_bridge:
                found.append(function)
    return found


def plan_group(root: HostRoot, family: str, device: Device) -> HostUndo:
    """Record every group member's driver and override before anything moves."""
    group = int(device.params["group"])
    members = _members(root, group)
    data = {"group": str(group), "members": ",".join(m.address for m in members)}
    for member in members:
        data[f"driver/{member.address}"] = member.driver or ""
        data[f"override/{member.address}"] = member.driver_override or ""
    return HostUndo(
        device=device.name,
        family=family,
        data=data,
        edits=device.edits,
        attributes=device.attributes,
    )


def _addresses(plan: HostUndo) -> list[str]:
    return [a for a in plan.data.get("members", "").split(",") if a]


def apply_group(root: HostRoot, writer: SysfsWriter, plan: HostUndo) -> None:
    """Bind every member to vfio-pci; if the kernel refuses one, put the others back."""
    done: list[str] = []
    try:
        for address in _addresses(plan):
            vfio.bind_vfio(root, writer, plan.device, address)
            done.append(address)
        vfio.wait_for_group_node(root, plan.device, int(plan.data["group"]))
    except HostRefused:
        _restore(root, writer, plan, done)
        raise


def _restore(
    root: HostRoot, writer: SysfsWriter, plan: HostUndo, addresses: list[str]
) -> list[str]:
    failures = []
    for address in reversed(addresses):
        try:
            vfio.restore_driver(
                root,
                writer,
                plan.device,
                address,
                plan.data.get(f"driver/{address}") or None,
                plan.data.get(f"override/{address}") or None,
            )
        except HostRefused as err:
            failures.append(str(err))
    return failures


def restore_group(root: HostRoot, writer: SysfsWriter, undo: HostUndo) -> None:
    """Return every member to the driver it had; raises if the kernel refuses any."""
    failures = _restore(root, writer, undo, _addresses(undo))
    if failures:
        raise FamilyError(undo.device, "; ".join(failures))
