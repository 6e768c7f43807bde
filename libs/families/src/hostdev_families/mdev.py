"""Mediated devices (vGPU profiles): created with a fresh UUID on prepare, removed on unprepare.

Each type of each parent is published as `max` devices that consume a shared
counter of the parent: a parent has lcm(max of each type) units and an instance
of a type with `max` instances costs units/max. So the scheduler (and the
allocator, before any sysfs write) can never place more instances on a parent than
it holds, and types that share the parent's resources share its counter.
"""

from __future__ import annotations

import errno
import fnmatch
import math
import os
import uuid as uuidlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from hostdev_devconfig import MdevSelector
from hostdev_events.inventory import Attribute, CounterUse, Device, NotOffered
from hostdev_events.plans import AnyPlan, MdevPlan
from hostdev_families import pciattrs
from hostdev_families.base import (
    ATTR_FAMILY,
    NOT_SELECTED,
    STD_PCI_BUS_ID,
    STD_PCIE_ROOT,
    Health,
    Survey,
    check_config,
    dns_label,
    own_plan,
)
from hostdev_families.errors import FamilyError, HostRefused
from hostdev_sysfs import HostRoot, SysfsWriter, read_function

FAMILY = "mdev"
MDEV_BUS = "/sys/class/mdev_bus"
COUNTER = "units"
ATTR_MDEV_UUID = "mdevUUID"  # the literal key KubeVirt reads from the metadata file


@dataclass(frozen=True, slots=True)
class MdevType:
    """One supported type of a parent, as sysfs shows it."""

    type_id: str
    name: str
    available: int
    existing: int

    @property
    def maximum(self) -> int:
        """Instances the parent holds of this type alone (what exists plus what is left)."""
        return self.available + self.existing


# Reads of a type's counts before the most cautious one seen is taken (see _counts).
COUNT_READS = 5


def _types(root: HostRoot, parent: str) -> list[MdevType]:
    base = f"{MDEV_BUS}/{parent}/mdev_supported_types"
    found = []
    real = root.path(base)
    for type_id in sorted(os.listdir(real)) if real.is_dir() else []:

        def read(name: str, default: str = "", type_id: str = type_id) -> str:
            try:
                return root.read_text(f"{base}/{type_id}/{name}").strip()
            except OSError:
                return default

        def count(type_id: str = type_id) -> tuple[int, int]:
            devices = real / type_id / "devices"
            available = int(read("available_instances", "0") or 0)
            return available, len(os.listdir(devices)) if devices.is_dir() else 0

        available, existing = _counts(count)
        found.append(
            MdevType(
                type_id=type_id, name=read("name", type_id), available=available, existing=existing
            )
        )
    return found


def _counts(count: Callable[[], tuple[int, int]]) -> tuple[int, int]:
    """A type's (available, existing) as two reads in a row agree on them.

    They are two reads of sysfs: an instance created or removed between them (our own
    prepare during a rescan) is counted in both or in neither, and the type's maximum would
    be one off until the next scan. While the type keeps changing, the read with the
    smallest maximum is taken: a capacity short for one scan costs less than one the parent
    cannot hold.
    """
    seen = [count()]
    while len(seen) < COUNT_READS:
        seen.append(count())
        if seen[-1] == seen[-2]:
            return seen[-1]
    return min(seen, key=sum)


class MdevFamily:
    """Types of selected parents; prepare creates the mdev, unprepare removes it."""

    name = FAMILY
    blocking = True

    def __init__(
        self, root: HostRoot, writer: SysfsWriter, selectors: tuple[MdevSelector, ...]
    ) -> None:
        self.root = root
        self.writer = writer
        self.selectors = selectors

    def _wanted(self, parent: str) -> tuple[str, ...] | None:
        """The type filter of the first selector matching the parent, or None."""
        function = read_function(self.root, parent)
        for s in self.selectors:
            if (s.parent is None or fnmatch.fnmatchcase(parent, s.parent)) and pciattrs.matches(
                function, vendor=s.vendor, device=s.device
            ):
                return s.types
        return None

    def discover(self) -> list[Device]:
        return self.survey().offered

    def survey(self) -> Survey:
        real = self.root.path(MDEV_BUS)
        found = Survey()
        for parent in sorted(os.listdir(real)) if real.is_dir() else []:
            wanted = self._wanted(parent)
            if wanted is None:
                reason = "no mdev selector of the configuration matches this parent"
                found.not_offered.append(_not_offered(parent, NOT_SELECTED, reason))
                continue
            types = []
            for t in _types(self.root, parent):
                candidate = f"{parent}/{t.type_id}"
                if wanted and t.type_id not in wanted and t.name not in wanted:
                    reason = "the mdev selector of this parent does not list this type"
                    found.not_offered.append(_not_offered(candidate, NOT_SELECTED, reason))
                elif t.maximum == 0:
                    reason = "the parent has no instance of this type left"
                    found.not_offered.append(_not_offered(candidate, "no-mdev-instances", reason))
                else:
                    types.append(t)
            if not types:
                reason = "the parent offers none of the selected mdev types"
                found.not_offered.append(_not_offered(parent, "no-mdev-types", reason))
            found.offered += self._parent_devices(parent, types)
        return found

    def _parent_devices(self, parent: str, types: list[MdevType]) -> list[Device]:
        if not types:
            return []
        units = math.lcm(*(t.maximum for t in types))
        function = read_function(self.root, parent)
        counter_set = dns_label(f"mdev-{parent}")
        devices = []
        for mtype in types:
            use = CounterUse(
                counter_set=counter_set,
                counter=COUNTER,
                value=units // mtype.maximum,
                capacity=units,
            )
            attributes = {
                ATTR_FAMILY: Attribute(string=FAMILY),
                "mdevType": Attribute(string=mtype.type_id[:64]),
                "mdevName": Attribute(string=mtype.name[:64]),
                STD_PCI_BUS_ID: Attribute(string=parent),
                pciattrs.ATTR_VENDOR: Attribute(string=pciattrs.hex_id(function.vendor)),
                pciattrs.ATTR_DEVICE: Attribute(string=pciattrs.hex_id(function.device)),
            }
            if function.pcie_root:
                attributes[STD_PCIE_ROOT] = Attribute(string=function.pcie_root)
            if function.numa_node >= 0:
                attributes[pciattrs.ATTR_NUMA] = Attribute(int_=function.numa_node)
            for slot in range(mtype.maximum):
                devices.append(
                    Device(
                        name=dns_label(f"mdev-{parent}-{mtype.type_id}-{slot}"),
                        family=FAMILY,
                        attributes=attributes,
                        params={"parent": parent, "type": mtype.type_id},
                        consumes=(use,),
                    )
                )
        return devices

    def plan(self, device: Device, claim_uid: str, config: Mapping[str, Any]) -> AnyPlan:
        check_config(device.name, config, None)
        instance = str(uuidlib.uuid4())  # recorded before creation, so a crash can clean it up
        return MdevPlan(
            device=device.name,
            parent=device.params["parent"],
            type=device.params["type"],
            uuid=instance,
            final_edits=False,  # the mdev's IOMMU group is known once it exists
            attributes={**device.attributes, ATTR_MDEV_UUID: Attribute(string=instance)},
        )

    def apply(self, plan: AnyPlan) -> AnyPlan:
        mdev = own_plan(plan, MdevPlan)
        instance, parent, mtype = mdev.uuid, mdev.parent, mdev.type
        if not self.root.exists(f"/sys/bus/mdev/devices/{instance}"):
            base = f"{MDEV_BUS}/{parent}/mdev_supported_types/{mtype}"
            if not self.root.exists(base):
                raise HostRefused(plan.device, f"{parent} no longer offers mdev type {mtype}")
            if int(self.root.read_text(f"{base}/available_instances") or 0) < 1:
                raise HostRefused(plan.device, f"no instance of {mtype} left on {parent}")
            try:
                self.writer.write(f"{base}/create", instance)
            except OSError as err:
                name = errno.errorcode.get(err.errno or 0, str(err.errno))
                raise HostRefused(
                    plan.device, f"kernel refused to create {mtype} on {parent}: {name}"
                ) from err
        group = self.root.readlink_name(f"/sys/bus/mdev/devices/{instance}/iommu_group")
        if group is None or not group.isdigit():
            raise HostRefused(plan.device, f"mdev {instance} has no IOMMU group")
        return msgspec.structs.replace(
            mdev,
            group=int(group),
            edits=pciattrs.vfio_edits(self.root, int(group)),
            final_edits=True,
        )

    def unprepare(self, plan: AnyPlan) -> None:
        undo = own_plan(plan, MdevPlan)
        instance = undo.uuid
        if not instance or not self.root.exists(f"/sys/bus/mdev/devices/{instance}"):
            return
        try:
            self.writer.write(f"/sys/bus/mdev/devices/{instance}/remove", "1")
        except OSError as err:
            name = errno.errorcode.get(err.errno or 0, str(err.errno))
            # EBUSY while QEMU still holds it: the kubelet retries unprepare.
            raise FamilyError(
                undo.device, f"kernel refused to remove mdev {instance}: {name}"
            ) from err

    def healthy(self, device: Device) -> Health:
        parent = device.params.get("parent", "-")
        if not self.root.exists(f"{MDEV_BUS}/{parent}"):
            return Health(problem=f"mdev parent {parent} is gone")
        return Health()


def _not_offered(candidate: str, code: str, reason: str) -> NotOffered:
    return NotOffered(family=FAMILY, candidate=candidate, reason=reason, code=code)
