"""Build the enabled families from configuration: the one registry."""

from __future__ import annotations

from hostdev_devconfig import DevicesConfig
from hostdev_events.inventory import Device
from hostdev_families.base import Family, Survey
from hostdev_families.hostpath import HostPathFamily
from hostdev_families.mdev import MdevFamily
from hostdev_families.netlink import VfNetlink
from hostdev_families.pci import PciFamily
from hostdev_families.sriov import SriovFamily
from hostdev_families.usb import UsbFamily
from hostdev_sysfs import HostRoot, SysfsWriter


def build_families(
    config: DevicesConfig, root: HostRoot, writer: SysfsWriter, netlink: VfNetlink
) -> dict[str, Family]:
    """Every family the configuration selects devices for, by family name."""
    families: list[Family] = []
    if config.host_paths:
        families.append(HostPathFamily(root, config.host_paths))
    if config.pci:
        families.append(PciFamily(root, writer, config.pci))
    if config.sriov:
        families.append(SriovFamily(root, writer, netlink, config.sriov))
    if config.mdev:
        families.append(MdevFamily(root, writer, config.mdev))
    if config.usb:
        families.append(UsbFamily(root, config.usb))
    return {f.name: f for f in families}


def survey_all(families: dict[str, Family]) -> Survey:
    """The inventory: every family's devices, sorted by name (a name seen twice is
    dropped), and every candidate not offered, by family and candidate."""
    devices: dict[str, Device] = {}
    not_offered = []
    for family in families.values():
        found = family.survey()
        for device in found.offered:
            devices.setdefault(device.name, device)
        not_offered += found.not_offered
    return Survey(
        offered=[devices[name] for name in sorted(devices)],
        not_offered=sorted(not_offered, key=lambda n: (n.family, n.candidate, n.code)),
    )


def discover_all(families: dict[str, Family]) -> list[Device]:
    """The devices of `survey_all`."""
    return survey_all(families).offered
