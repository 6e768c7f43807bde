"""Why a candidate is not offered, as far as the command can tell from the host itself.

The families say what they offer; this looks at what they pass over: PCI functions the
selection does not match or that have no IOMMU group, host paths that do not exist, a
selection for USB on a host without a USB bus.
"""

from __future__ import annotations

import glob as globlib
import os
from dataclasses import dataclass

from hostdev_events.inventory import Device
from hostdev_families import DevicesConfig, PciSelector, SriovSelector
from hostdev_families.pciattrs import matches
from hostdev_sysfs import HostRoot, PathEscapesRoot, PciFunction, list_functions, read_function

IOMMU_GROUPS = "/sys/kernel/iommu_groups"
USB_DEVICES = "/sys/bus/usb/devices"


@dataclass(frozen=True, slots=True)
class NotOffered:
    """A candidate device the driver passes over, and why (`code` is for tools)."""

    family: str
    candidate: str
    reason: str
    code: str


def iommu_groups(root: HostRoot) -> int:
    """How many IOMMU groups the kernel shows; 0 means the IOMMU is off (or absent)."""
    base = root.path(IOMMU_GROUPS)
    return len(os.listdir(base)) if base.is_dir() else 0


def _pci_selected(function: PciFunction, selectors: tuple[PciSelector, ...]) -> bool:
    return any(
        matches(
            function, vendor=s.vendor, device=s.device, class_prefix=s.class_, address=s.address
        )
        for s in selectors
    )


def _vf_selected(pf: PciFunction, selectors: tuple[SriovSelector, ...]) -> bool:
    for s in selectors:
        if s.pf_name is not None and s.pf_name not in pf.netdevs:
            continue
        if matches(pf, vendor=s.vendor, device=s.device, address=s.pf):
            return True
    return False


def _no_group(root: HostRoot) -> str:
    if iommu_groups(root) == 0:
        return f"no IOMMU group: the IOMMU is off ({IOMMU_GROUPS} is empty)"
    return "no IOMMU group"


def pci_reasons(root: HostRoot, config: DevicesConfig, offered: set[str]) -> list[NotOffered]:
    """PCI functions and VFs not offered: bridges are never candidates."""
    found: list[NotOffered] = []
    for address in list_functions(root):
        if address in offered:
            continue
        function = read_function(root, address)
        if function.is_bridge:
            continue
        if function.physfn is not None:
            pf = read_function(root, function.physfn)
            family, selected = "sriov", _vf_selected(pf, config.sriov)
            what = f"its PF {pf.address} is not matched by the sriov selection"
        else:
            family, selected = "pci", _pci_selected(function, config.pci)
            what = "not matched by the pci selection"
        if not selected:
            found.append(NotOffered(family, address, what, "not-selected"))
        elif function.iommu_group is None:
            found.append(NotOffered(family, address, _no_group(root), "no-iommu-group"))
    return found


def host_path_reasons(root: HostRoot, config: DevicesConfig) -> list[NotOffered]:
    """Configured host paths that are not there."""
    found: list[NotOffered] = []
    for spec in config.host_paths:
        try:
            if globlib.has_magic(spec.path):
                if not root.glob(spec.path):
                    found.append(
                        NotOffered("hostpath", spec.path, "nothing matches", "missing-node")
                    )
            elif not root.exists(spec.path):
                found.append(NotOffered("hostpath", spec.path, "does not exist", "missing-node"))
        except PathEscapesRoot as err:
            found.append(NotOffered("hostpath", spec.path, str(err), "bad-path"))
    return found


def usb_reasons(root: HostRoot, config: DevicesConfig) -> list[NotOffered]:
    """A USB selection on a host with no USB bus at all."""
    base = root.path(USB_DEVICES)
    if config.usb and not (base.is_dir() and os.listdir(base)):
        return [
            NotOffered("usb", "*", f"no USB bus on this host ({USB_DEVICES} is empty)", "no-usb")
        ]
    return []


def not_offered(root: HostRoot, config: DevicesConfig, devices: list[Device]) -> list[NotOffered]:
    """Every reason the command can tell, sorted by family and candidate."""
    # A function is offered itself (pci, sriov) or through its mdev types.
    offered = {d.params.get("address") or d.params.get("parent", "") for d in devices}
    found = (
        pci_reasons(root, config, offered)
        + host_path_reasons(root, config)
        + usb_reasons(root, config)
    )
    return sorted(found, key=lambda n: (n.family, n.candidate))
