"""PCI passthrough: whole functions bound to vfio-pci together with their IOMMU group.

vfio-pci hands a VM a whole IOMMU group or nothing: every endpoint of the group must
leave its host driver (bridges may stay). So a function is offered only when every
other endpoint of its group is offered too, unless its selector opts in to taking the
whole group (`wholeGroup`); prepare checks the group again, since a function can join
it after discovery, and refuses rather than unbind a device nobody asked for. When
several functions of one group are offered, each consumes the group's counter set of
capacity 1, so the scheduler, and then the ledger, gives a group to one claim at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hostdev_devconfig import PciSelector
from hostdev_events.alloc import group_entry
from hostdev_events.inventory import Attribute, CounterUse, Device, NotOffered
from hostdev_events.plans import AnyPlan, FunctionDriver, PciPlan
from hostdev_families import pciattrs, vfio
from hostdev_families.base import (
    NOT_SELECTED,
    Health,
    Survey,
    check_config,
    own_plan,
)
from hostdev_families.clock import SYSTEM_CLOCK, ThreadClock
from hostdev_families.errors import FamilyError, HostRefused
from hostdev_families.pcihealth import discovered_driver, function_health
from hostdev_sysfs import (
    HostRoot,
    PciFunction,
    SysfsWriter,
    group_members,
    list_functions,
    read_function,
)

FAMILY = "pci"
GROUP_SHARED = "iommu-group-shared"
# One counter set per shared IOMMU group (`iommu-group-12`), one unit: a DNS label each.
GROUP_COUNTER = "exclusive"


class IommuGroupShared(FamilyError):
    """The device's IOMMU group holds a function nobody offered; binding it would take
    that function from its host driver."""


class PciFamily:
    """Selected PCI functions; prepare moves the function's whole IOMMU group to vfio-pci."""

    name = FAMILY
    blocking = True

    def __init__(
        self,
        root: HostRoot,
        writer: SysfsWriter,
        selectors: tuple[PciSelector, ...],
        *,
        clock: ThreadClock = SYSTEM_CLOCK,
    ) -> None:
        self.root = root
        self.writer = writer
        self.selectors = selectors
        self.clock = clock

    def _matching(self, function: PciFunction) -> list[PciSelector]:
        return [
            s
            for s in self.selectors
            if pciattrs.matches(
                function, vendor=s.vendor, device=s.device, class_prefix=s.class_, address=s.address
            )
        ]

    def _candidate(self, function: PciFunction) -> bool:
        """Selected, not a bridge, not a VF (those belong to the SR-IOV family), in a group."""
        return (
            not function.is_bridge
            and function.physfn is None
            and function.iommu_group is not None
            and bool(self._matching(function))
        )

    def _whole_group(self, function: PciFunction) -> bool:
        return any(s.whole_group for s in self._matching(function))

    def discover(self) -> list[Device]:
        return self.survey().offered

    def survey(self) -> Survey:
        found = Survey()
        candidates: list[PciFunction] = []
        for address in list_functions(self.root):
            function = read_function(self.root, address)
            if function.is_bridge or function.physfn is not None:
                continue  # bridges are never offered; VFs belong to the SR-IOV family
            if not self._matching(function):
                reason = "no pci selector of the configuration matches it"
                found.not_offered.append(_not_offered(address, NOT_SELECTED, reason))
            elif function.iommu_group is None:
                found.not_offered.append(no_group(self.root, FAMILY, address))
            else:
                candidates.append(function)
        chosen = {f.address for f in candidates}
        offered: list[PciFunction] = []
        for function in candidates:
            assert function.iommu_group is not None
            others = [
                m
                for m in endpoints(self.root, function.iommu_group)
                if m.address != function.address
            ]
            strangers = [m for m in others if m.address not in chosen]
            if strangers and not self._whole_group(function):
                found.not_offered.append(
                    group_shared(FAMILY, function.address, function.iommu_group, strangers)
                )
            else:
                offered.append(function)
        per_group: dict[int, int] = {}
        for function in offered:
            assert function.iommu_group is not None
            per_group[function.iommu_group] = per_group.get(function.iommu_group, 0) + 1
        for function in offered:
            assert function.iommu_group is not None
            found.offered.append(self.device(function, per_group[function.iommu_group] > 1))
        return found

    def device(self, function: PciFunction, shared_group: bool = False) -> Device:
        """The inventory entry of one function; `shared_group` when other offered functions
        sit in its IOMMU group, which then becomes a counter set the scheduler sees."""
        assert function.iommu_group is not None
        attributes = pciattrs.pci_attributes(FAMILY, function)
        if function.driver:
            attributes[pciattrs.ATTR_DRIVER] = Attribute(string=function.driver)
        return Device(
            name=pciattrs.pci_name("pci", function.address),
            family=FAMILY,
            attributes=attributes,
            edits=pciattrs.vfio_edits(self.root, function.iommu_group),
            params={
                "address": function.address,
                "group": str(function.iommu_group),
                **discovered_driver(function),
            },
            consumes=(group_counter(function.iommu_group),) if shared_group else (),
            also_holds=(group_entry(function.iommu_group),),
        )

    def plan(self, device: Device, claim_uid: str, config: Mapping[str, Any]) -> AnyPlan:
        check_config(device.name, config, None)
        address = device.params["address"]
        if not self.root.exists(f"/sys/bus/pci/devices/{address}"):
            raise FamilyError(device.name, f"PCI function {address} is gone from this host")
        function = read_function(self.root, address)
        allowed = None if self._whole_group(function) else self._candidate
        group, members = plan_group(self.root, device, allowed)
        return PciPlan(
            device=device.name,
            group=group,
            members=members,
            edits=device.edits,
            attributes=device.attributes,
        )

    def apply(self, plan: AnyPlan) -> AnyPlan:
        own = own_plan(plan, PciPlan)
        apply_group(self.root, self.writer, own.device, own.group, own.members, self.clock)
        return own

    def unprepare(self, plan: AnyPlan) -> None:
        own = own_plan(plan, PciPlan)
        restore_group(self.root, self.writer, own.device, own.members)

    def healthy(self, device: Device) -> Health:
        return function_health(self.root, device.params)


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


def group_counter(group: int) -> CounterUse:
    """The share of its IOMMU group an offered function takes: all of it."""
    return CounterUse(counter_set=group_entry(group), counter=GROUP_COUNTER, value=1, capacity=1)


def group_shared(family: str, address: str, group: int, strangers: list[PciFunction]) -> NotOffered:
    """Why a function is not offered: its group holds functions no selector offers."""
    return NotOffered(
        family=family,
        candidate=address,
        code=GROUP_SHARED,
        reason=f"IOMMU group {group} also holds {_describe(strangers)}, which this driver does "
        "not offer; select those too, or set wholeGroup: true to take the whole group",
    )


def _describe(functions: list[PciFunction]) -> str:
    return ", ".join(f"{f.address} ({f.driver or 'no driver'})" for f in functions)


def endpoints(root: HostRoot, group: int) -> list[PciFunction]:
    """PCI functions of a group that must leave their host driver (bridges stay)."""
    found = []
    for member in group_members(root, group):
        if root.exists(f"/sys/bus/pci/devices/{member}"):
            function = read_function(root, member)
            if not function.is_bridge:
                found.append(function)
    return found


def plan_group(
    root: HostRoot,
    device: Device,
    allowed: Callable[[PciFunction], bool] | None,
) -> tuple[int, tuple[FunctionDriver, ...]]:
    """The device's IOMMU group and every member with its driver and override, recorded
    before anything moves.

    `allowed` says which other functions of the group may move with the device (those
    offered); None lets every one move (the selector's `wholeGroup`). A function that
    joined the group since discovery and is not allowed makes it refuse.
    """
    group = int(device.params["group"])
    members = endpoints(root, group)
    address = device.params["address"]
    if allowed is not None:
        strangers = [m for m in members if m.address != address and not allowed(m)]
        if strangers:
            raise IommuGroupShared(
                device.name,
                f"IOMMU group {group} now also holds {_describe(strangers)}, which this "
                "driver does not offer; refusing to take it from its driver (select it "
                "too, or set wholeGroup: true)",
            )
    return group, tuple(
        FunctionDriver(address=m.address, driver=m.driver or "", override=m.driver_override or "")
        for m in members
    )


def apply_group(
    root: HostRoot,
    writer: SysfsWriter,
    device: str,
    group: int,
    members: Sequence[FunctionDriver],
    clock: ThreadClock = SYSTEM_CLOCK,
) -> None:
    """Bind every member to vfio-pci; if the kernel refuses one, put them all back.

    A member counts as touched before its first write: the kernel can refuse the bind
    after the unbind went through, and that member must not stay without a driver.
    Restoring an untouched member is a no-op (restore_driver checks first).
    """
    touched: list[FunctionDriver] = []
    try:
        for member in members:
            touched.append(member)
            vfio.bind_vfio(root, writer, device, member.address)
        vfio.wait_for_group_node(root, device, group, clock)
    except HostRefused as err:
        failures = _restore(root, writer, device, touched)
        if failures:
            raise HostRefused(
                device, f"{reason(err)}; rollback also failed: {'; '.join(failures)}"
            ) from err
        raise


def _restore(
    root: HostRoot, writer: SysfsWriter, device: str, members: Sequence[FunctionDriver]
) -> list[str]:
    failures = []
    for member in reversed(members):
        try:
            vfio.restore_driver(
                root, writer, device, member.address, member.driver or None, member.override or None
            )
        except HostRefused as err:
            failures.append(reason(err))
    return failures


def reason(err: FamilyError) -> str:
    """The error's message without its device prefix, to join several under one device."""
    return str(err).removeprefix(f"{err.device}: ")


def restore_group(
    root: HostRoot, writer: SysfsWriter, device: str, members: Sequence[FunctionDriver]
) -> None:
    """Return every member to the driver it had; raises if the kernel refuses any."""
    failures = _restore(root, writer, device, members)
    if failures:
        raise FamilyError(device, "; ".join(failures))
