"""Build the enabled families from configuration: the one registry."""

from __future__ import annotations

from hostdev_events.inventory import Device
from hostdev_families.base import Family
from hostdev_families.config import DevicesConfig
from hostdev_families.hostpath import FAMILY as HOSTPATH
from hostdev_families.hostpath import HostPathFamily
from hostdev_sysfs import HostRoot


def build_families(config: DevicesConfig, root: HostRoot) -> dict[str, Family]:
    """Every family the configuration selects devices for, by family name."""
    families: dict[str, Family] = {}
    if config.host_paths:
        families[HOSTPATH] = HostPathFamily(root, config.host_paths)
    return families


def discover_all(families: dict[str, Family]) -> list[Device]:
    """The inventory: every family's devices, sorted by name; a name seen twice is dropped."""
    devices: dict[str, Device] = {}
    for family in families.values():
        for device in family.discover():
            devices.setdefault(device.name, device)
    return [devices[name] for name in sorted(devices)]
