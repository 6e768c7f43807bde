"""Host-wide facts behind the families' reasons: the IOMMU, and a USB bus that is not there.

Each family's survey says why it passes over a candidate it sees; a selection for USB on
a host without a USB bus has no candidate to speak of, so the command says it here.
"""

from __future__ import annotations

import os

from hostdev_events.inventory import NotOffered
from hostdev_families import DevicesConfig
from hostdev_sysfs import HostRoot

IOMMU_GROUPS = "/sys/kernel/iommu_groups"
USB_DEVICES = "/sys/bus/usb/devices"


def iommu_groups(root: HostRoot) -> int:
    """How many IOMMU groups the kernel shows; 0 means the IOMMU is off (or absent)."""
    base = root.path(IOMMU_GROUPS)
    return len(os.listdir(base)) if base.is_dir() else 0


def host_reasons(root: HostRoot, config: DevicesConfig) -> list[NotOffered]:
    """What no family can report as a candidate: a USB selection with no USB bus."""
    base = root.path(USB_DEVICES)
    if config.usb and not (base.is_dir() and os.listdir(base)):
        reason = f"no USB bus on this host ({USB_DEVICES} is empty)"
        return [NotOffered(family="usb", candidate="*", reason=reason, code="no-usb")]
    return []
