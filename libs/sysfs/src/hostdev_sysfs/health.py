"""Readings that health checks compare over time: AER counters, a PF's link, a node's number."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from hostdev_sysfs.pci import PCI_DEVICES
from hostdev_sysfs.root import HostRoot

# aer_dev_<severity> lists one "<error name> <count>" line per error type, then the total
# under this name (drivers/pci/pcie/aer.c, aer_stats_dev_attr).
AER_TOTALS = {"fatal": "TOTAL_ERR_FATAL", "nonfatal": "TOTAL_ERR_NONFATAL"}
# operstate values (RFC 2863) in which the link carries no traffic; "unknown" is what many
# drivers report while working, so it is not one of them.
LINK_DOWN_STATES = frozenset({"down", "lowerlayerdown", "notpresent"})


def read_aer_totals(root: HostRoot, bdf: str) -> dict[str, int]:
    """A function's fatal and non-fatal AER totals, by severity (`fatal`, `nonfatal`).

    A severity is missing when the function has no AER statistics (no AER capability,
    or a kernel older than 4.19) or its file does not have the total line.
    """
    totals = {}
    for severity, total_name in AER_TOTALS.items():
        try:
            text = root.read_text(f"{PCI_DEVICES}/{bdf}/aer_dev_{severity}")
        except OSError:
            continue
        for line in text.splitlines():
            name, _, count = line.rpartition(" ")
            if name == total_name and count.isdigit():
                totals[severity] = int(count)
    return totals


@dataclass(frozen=True, slots=True)
class LinkState:
    """One network interface's link as sysfs shows it."""

    name: str
    operstate: str  # "up", "down", "unknown", ...
    carrier: bool | None  # None when the kernel does not say (interface administratively down)

    @property
    def down(self) -> bool:
        """Whether the link carries no traffic."""
        return self.operstate in LINK_DOWN_STATES or self.carrier is False


def read_links(root: HostRoot, bdf: str) -> list[LinkState]:
    """The links of the network interfaces a PCI function registers, by interface name."""
    base = f"{PCI_DEVICES}/{bdf}/net"
    real = root.path(base)
    names = sorted(os.listdir(real)) if real.is_dir() else []
    links = []
    for name in names:
        try:
            operstate = root.read_text(f"{base}/{name}/operstate").strip()
        except OSError:
            continue  # the interface went away between the listing and the read
        try:
            carrier: bool | None = root.read_text(f"{base}/{name}/carrier").strip() == "1"
        except OSError:
            carrier = None  # EINVAL while the interface is down by administration
        links.append(LinkState(name, operstate, carrier))
    return links


def device_number(root: HostRoot, host_path: str) -> str | None:
    """`major:minor` of a character or block device node (through symlinks), None for any
    other kind of file; raises OSError (FileNotFoundError) when the path is gone."""
    info = os.stat(root.real(host_path))
    if not (stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)):
        return None
    return f"{os.major(info.st_rdev)}:{os.minor(info.st_rdev)}"
