"""Device-plugin decisions without I/O: which IDs a resource offers, their health, KubeVirt's env."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hostdev_devconfig import ResourceSpec
from hostdev_events import dp
from hostdev_events.alloc import Hold
from hostdev_events.dp import DpPrepared
from hostdev_events.inventory import Device

HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"
PCI_BUS_ID = "resource.kubernetes.io/pciBusID"
PCIE_ROOT = "resource.kubernetes.io/pcieRoot"
MAX_ID = 63  # the kubelet's limit on device plugin IDs


@dataclass(frozen=True, slots=True)
class Offered:
    """One device-plugin ID: the inventory device behind it, its NUMA node, its health."""

    id: str
    device: str
    numa: int | None
    pcie_root: str
    health: str


def _selected(spec: ResourceSpec, device: Device) -> bool:
    if spec.family is not None and device.family != spec.family:
        return False
    return not spec.devices or any(fnmatch.fnmatchcase(device.name, p) for p in spec.devices)


def slot_id(device: str, slot: int) -> str:
    """The ID of one share of a shared device; stays within the kubelet's 63 characters."""
    suffix = f"-s{slot}"
    return device[: MAX_ID - len(suffix)] + suffix


def _available(spec: ResourceSpec, device: Device, hold: Hold | None) -> bool:
    """False when someone outside this resource holds the device so that we cannot."""
    if hold is None or not hold.holders:
        return True
    ours = dp.owner_prefix(spec.name)
    foreign = [h for h in hold.holders if not h.startswith(ours)]
    return not foreign or (hold.shareable and device.shareable)


def _shares(spec: ResourceSpec, device: Device) -> int:
    """How many IDs a shared device gets: `shares`, but no more than the users its
    consumable capacities allow (`slots: 4`), since each ID takes one when allocated."""
    users = [c.value // c.default for c in device.consumable.values() if c.default > 0]
    return min([spec.shares, *users])


def offered(
    spec: ResourceSpec,
    devices: Mapping[str, Device],
    holds: Mapping[str, Hold],
    restoring: frozenset[str] = frozenset(),
) -> list[Offered]:
    """Every ID the resource offers now. A device a DRA claim (or another resource) holds
    exclusively is reported Unhealthy, so the kubelet does not hand it out twice; so is an
    ID in `restoring`, held by a pod whose CDI spec and host state are not yet rebuilt."""
    result = []
    for name in sorted(devices):
        device = devices[name]
        if not _selected(spec, device):
            continue
        numa_attr = device.attributes.get("numaNode")
        numa = numa_attr.int_ if numa_attr is not None else None
        root_attr = device.attributes.get(PCIE_ROOT)
        root = (root_attr.string or "") if root_attr is not None else ""
        usable = device.healthy and all(
            _available(spec, device, holds.get(entry))
            for entry in (device.name, *device.also_holds)
        )
        health = HEALTHY if usable else UNHEALTHY
        ids = (
            [slot_id(name, i) for i in range(_shares(spec, device))]
            if spec.shares > 1 and device.shareable
            else [name]
        )
        result += [
            Offered(i, name, numa, root, UNHEALTHY if i in restoring else health) for i in ids
        ]
    return result


def env_suffix(resource: str) -> str:
    """KubeVirt's naming: upper case, `/` and `.` become `_`, other characters stay."""
    return resource.upper().replace("/", "_").replace(".", "_")


def kubevirt_env(resource: str, prepared: Sequence[DpPrepared]) -> dict[str, str]:
    """The variables virt-launcher reads for device-plugin devices (PCI, mdev, USB)."""
    suffix = env_suffix(resource)
    pci: list[str] = []
    mdev: list[str] = []
    usb: list[str] = []
    for item in prepared:
        attrs = item.attributes
        if item.family == "mdev" and "mdevUUID" in attrs:
            mdev.append(attrs["mdevUUID"].string or "")
        elif item.family in ("pci", "sriov") and PCI_BUS_ID in attrs and item.edits.device_nodes:
            pci.append(attrs[PCI_BUS_ID].string or "")
        elif item.family == "usb" and "busnum" in attrs and "devnum" in attrs:
            usb.append(f"{attrs['busnum'].int_}:{attrs['devnum'].int_}")
    env = {}
    for prefix, values in (
        ("PCI_RESOURCE", pci),
        ("MDEV_PCI_RESOURCE", mdev),
        ("USB_RESOURCE", usb),
    ):
        if values:
            env[f"{prefix}_{suffix}"] = ",".join(values)
    return env


INSTANCE_CHARS = 8  # of the pod UID: 32 random bits tell two pods of one node apart


def plugin_socket_name(resource: str, instance: str = "") -> str:
    """The socket file name under the kubelet's device plugin directory; with an instance
    (the pod UID) two gateways of a rolling update each serve and register their own.
    Only the UID's first characters go in: the whole of it would push long resource names
    past the 107 bytes a unix socket path may have."""
    suffix = f"-{instance[:INSTANCE_CHARS]}" if instance else ""
    return "hostdev-" + resource.replace("/", "_") + suffix + ".sock"
