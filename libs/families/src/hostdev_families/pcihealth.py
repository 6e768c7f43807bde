"""Health of PCI functions and SR-IOV VFs: gone, driver lost, AER errors, the PF's link."""

from __future__ import annotations

from collections.abc import Mapping

from hostdev_families.base import DISCOVERED, Health
from hostdev_families.vfio import VFIO_DRIVER
from hostdev_sysfs import HostRoot, PciFunction, read_aer_totals, read_function, read_links

DISCOVERED_DRIVER = DISCOVERED + "driver"
_AER_LABELS = {"fatal": "AER fatal errors", "nonfatal": "AER non-fatal errors"}


def discovered_driver(function: PciFunction) -> dict[str, str]:
    """The param recording the function's host driver, when it has one.

    vfio-pci is no host driver: a function seen on it may be held by a claim, and going back
    to "no driver" when that claim ends is what the preparer is asked to do.
    """
    if function.driver is None or function.driver == VFIO_DRIVER:
        return {}
    return {DISCOVERED_DRIVER: function.driver}


def aer_counters(root: HostRoot, address: str, label_prefix: str = "") -> dict[str, int]:
    """The function's AER fatal and non-fatal totals, labelled for messages."""
    totals = read_aer_totals(root, address)
    return {label_prefix + _AER_LABELS[severity]: count for severity, count in totals.items()}


def function_health(root: HostRoot, params: Mapping[str, str]) -> Health:
    """A function that left the bus or lost the host driver it had is unusable; AER totals
    are reported as counters for discovery to watch.

    A function with no driver whose driver_override names vfio-pci is being moved there by a
    prepare (the old driver's remove can take seconds): not a loss.
    """
    address = params.get("address", "-")
    if not root.exists(f"/sys/bus/pci/devices/{address}"):
        return Health(problem=f"{address} is gone from the PCI bus")
    function = read_function(root, address)
    counters = aer_counters(root, address)
    host_driver = params.get(DISCOVERED_DRIVER)
    if function.driver is None and host_driver and function.driver_override != VFIO_DRIVER:
        return Health(problem=f"{address} lost its driver {host_driver}", counters=counters)
    return Health(counters=counters)


def pf_link_problem(root: HostRoot, pf: str, pf_ifname: str) -> str:
    """Why the PF's link carries no traffic, or "" when it does (or the PF has no netdev)."""
    links = read_links(root, pf)
    if pf_ifname and not links:
        return f"PF {pf_ifname} is gone"
    named = [link for link in links if link.name == pf_ifname] or links
    for link in named:
        if link.down:
            why = "no carrier" if link.carrier is False else f"operstate {link.operstate}"
            return f"PF {link.name} link down ({why})"
    return ""


def vf_health(root: HostRoot, params: Mapping[str, str]) -> Health:
    """A VF's own health, its PF's link, and the PF's AER counters next to the VF's: a PF
    error disrupts every VF behind it."""
    own = function_health(root, params)
    pf = params.get("pf", "")
    if not pf or not root.exists(f"/sys/bus/pci/devices/{pf}"):
        return own
    counters = {**own.counters, **aer_counters(root, pf, f"PF {pf} ")}
    problems = [
        p for p in (own.problem, pf_link_problem(root, pf, params.get("pf_ifname", ""))) if p
    ]
    return Health(problem="; ".join(problems), counters=counters)
