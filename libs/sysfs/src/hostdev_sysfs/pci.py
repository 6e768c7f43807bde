"""Reading PCI functions, IOMMU groups and SR-IOV links from sysfs under a root."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from hostdev_sysfs.root import HostRoot

PCI_DEVICES = "/sys/bus/pci/devices"
BRIDGE_CLASS_PREFIX = "0x0604"


@dataclass(frozen=True, slots=True)
class PciFunction:
    """What the driver needs to know about one PCI function."""

    address: str  # extended BDF, dddd:bb:dd.f
    vendor: str  # 0x10de
    device: str
    class_code: str  # 0x030200
    driver: str | None  # bound driver, None when unbound
    iommu_group: int | None
    numa_node: int  # -1 when the platform does not say
    pcie_root: str  # pci<domain>:<bus> of the root complex
    driver_override: str | None  # None when "(null)"
    physfn: str | None = None  # the PF of a VF
    virtfns: tuple[str, ...] = ()  # the VFs of a PF, by index
    total_vfs: int = 0
    netdevs: tuple[str, ...] = field(default=())

    @property
    def is_bridge(self) -> bool:
        """PCI bridges stay on pcieport; VFIO leaves them alone in a viable group."""
        return self.class_code.startswith(BRIDGE_CLASS_PREFIX)


def list_functions(root: HostRoot) -> list[str]:
    """Every PCI address on the host, sorted."""
    base = root.path(PCI_DEVICES)
    return sorted(os.listdir(base)) if base.is_dir() else []


def _read(root: HostRoot, bdf: str, name: str, default: str = "") -> str:
    try:
        return root.read_text(f"{PCI_DEVICES}/{bdf}/{name}").strip()
    except OSError:
        return default


def pcie_root(root: HostRoot, bdf: str) -> str:
    """`pci<domain>:<bus>`: the first component after `devices/` of the function's link target."""
    target = os.readlink(root.path(f"{PCI_DEVICES}/{bdf}"))
    parts = PurePosixPath(target).parts
    if "devices" in parts:
        after = parts[parts.index("devices") + 1 :]
        if after and after[0].startswith("pci"):
            return after[0]
    return ""


def read_function(root: HostRoot, bdf: str) -> PciFunction:
    """One function's identity, driver, group and SR-IOV links."""
    base = f"{PCI_DEVICES}/{bdf}"
    group = root.readlink_name(f"{base}/iommu_group")
    override = _read(root, bdf, "driver_override", "(null)")
    virtfns: dict[int, str] = {}
    entries = os.listdir(root.path(base))
    for entry in entries:
        if entry.startswith("virtfn") and entry[6:].isdigit():
            name = root.readlink_name(f"{base}/{entry}")
            if name:
                virtfns[int(entry[6:])] = name
    net = root.path(f"{base}/net")
    numa = _read(root, bdf, "numa_node", "-1")
    return PciFunction(
        address=bdf,
        vendor=_read(root, bdf, "vendor").lower(),
        device=_read(root, bdf, "device").lower(),
        class_code=_read(root, bdf, "class").lower(),
        driver=root.readlink_name(f"{base}/driver"),
        iommu_group=int(group) if group and group.isdigit() else None,
        numa_node=int(numa) if numa.lstrip("-").isdigit() else -1,
        pcie_root=pcie_root(root, bdf),
        driver_override=None if override in ("(null)", "") else override,
        physfn=root.readlink_name(f"{base}/physfn"),
        virtfns=tuple(virtfns[i] for i in sorted(virtfns)),
        total_vfs=int(_read(root, bdf, "sriov_totalvfs", "0") or 0),
        netdevs=tuple(sorted(os.listdir(net))) if net.is_dir() else (),
    )


def group_members(root: HostRoot, group: int) -> list[str]:
    """Every device in an IOMMU group (PCI addresses and mdev UUIDs), sorted."""
    base = root.path(f"/sys/kernel/iommu_groups/{group}/devices")
    return sorted(os.listdir(base)) if base.is_dir() else []
