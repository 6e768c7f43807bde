"""Numbered copies of a shared device, for API servers that drop `allowMultipleAllocations`.

Without the DRAConsumableCapacity feature a device can be allocated to one claim only, so
discovery publishes a shared device (`kvm`) as copies `kvm-0` ... `kvm-<n-1>` instead;
the preparer maps a copy back to the device. The copy's name is the device's name, a dash
and the index, so it stays a DNS label only while that fits in 63 characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from hostdev_events.inventory import Device

MAX_NAME_LENGTH = 63  # a ResourceSlice device name is a DNS label
_INDEX = re.compile(r"-(0|[1-9][0-9]*)$")


def copy_name(device: str, index: int) -> str:
    """The name of copy `index` of `device`."""
    return f"{device}-{index}"


def copies_fit(device: str, count: int) -> bool:
    """Whether every copy name of `device` is short enough to publish."""
    return count <= 0 or len(copy_name(device, count - 1)) <= MAX_NAME_LENGTH


def copied_device(name: str) -> str | None:
    """The device a copy name points to, if `name` has the shape of one (`kvm-3` -> `kvm`).

    Whether that device exists and is shared is for the caller to check: a name
    of this shape may also be an ordinary device (`card-0`).
    """
    match = _INDEX.search(name)
    if match is None or match.start() == 0:
        return None
    return name[: match.start()]


def lookup(devices: Mapping[str, Device], name: str) -> Device | None:
    """A device by name from an inventory mapping, copies resolved to their shared device."""
    found = devices.get(name)
    if found is not None:
        return found
    base = copied_device(name)
    shared = devices.get(base) if base is not None else None
    return shared if shared is not None and shared.shareable else None
