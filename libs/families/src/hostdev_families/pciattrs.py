"""Attributes, names and edits shared by every family of PCI-backed devices."""

from __future__ import annotations

import fnmatch

from hostdev_events.inventory import Attribute, ContainerEdits, DeviceNodeEdit
from hostdev_families.base import ATTR_FAMILY, STD_PCI_BUS_ID, STD_PCIE_ROOT, dns_label
from hostdev_sysfs import HostRoot, PciFunction

ATTR_VENDOR = "vendorID"
ATTR_DEVICE = "deviceID"
ATTR_CLASS = "classCode"
ATTR_IOMMU_GROUP = "iommuGroup"
ATTR_NUMA = "numaNode"
ATTR_DRIVER = "hostDriver"


def hex_id(value: str) -> str:
    """IDs are published as lowercase hex without `0x` (`10de`, `030200`)."""
    value = value.lower()
    return value[2:] if value.startswith("0x") else value


def matches(
    function: PciFunction,
    *,
    vendor: str | None = None,
    device: str | None = None,
    class_prefix: str | None = None,
    address: str | None = None,
) -> bool:
    """Whether a function fits a selector; an absent field matches anything."""
    if vendor is not None and hex_id(vendor) != hex_id(function.vendor):
        return False
    if device is not None and hex_id(device) != hex_id(function.device):
        return False
    if class_prefix is not None and not hex_id(function.class_code).startswith(
        hex_id(class_prefix)
    ):
        return False
    return address is None or fnmatch.fnmatchcase(function.address, address)


def pci_name(prefix: str, address: str) -> str:
    """`pci-0000-3b-00-0`: the address as a DNS label, stable across restarts."""
    return dns_label(f"{prefix}-{address}")


def pci_attributes(family: str, function: PciFunction) -> dict[str, Attribute]:
    """Standard and driver attributes of a PCI function; NUMA only when the platform says."""
    attributes = {
        ATTR_FAMILY: Attribute(string=family),
        STD_PCI_BUS_ID: Attribute(string=function.address),
        ATTR_VENDOR: Attribute(string=hex_id(function.vendor)),
        ATTR_DEVICE: Attribute(string=hex_id(function.device)),
        ATTR_CLASS: Attribute(string=hex_id(function.class_code)),
    }
    if function.pcie_root:
        attributes[STD_PCIE_ROOT] = Attribute(string=function.pcie_root)
    if function.iommu_group is not None:
        attributes[ATTR_IOMMU_GROUP] = Attribute(int_=function.iommu_group)
    if function.numa_node >= 0:
        attributes[ATTR_NUMA] = Attribute(int_=function.numa_node)
    return attributes


def vfio_edits(root: HostRoot, group: int) -> ContainerEdits:
    """`/dev/vfio/vfio` and `/dev/vfio/<group>`, at the same paths in the container."""
    return ContainerEdits(
        device_nodes=tuple(
            DeviceNodeEdit(path=path, host_path=str(root.path(path)), permissions="rw")
            for path in ("/dev/vfio/vfio", f"/dev/vfio/{group}")
        )
    )
