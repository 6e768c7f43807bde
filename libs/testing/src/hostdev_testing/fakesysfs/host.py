"""Host-wide pieces of a fake tree: NUMA nodes, the IOMMU marker, device nodes, modules, DRM minors."""

from __future__ import annotations

import re
from collections.abc import Mapping

from hostdev_testing.fakesysfs.pci import ensure_driver, function_dir
from hostdev_testing.fakesysfs.tree import Tree

DRM_RE = re.compile(r"(card|renderD)(\d+)")
DRM_MAJOR = 226


class HostPieces:
    """The parts of `FakeSysfs` that are not about one bus's device model."""

    tree: Tree

    def drm(self, bdf: str, minor_name: str) -> str:
        """A DRM minor (`card0`, `renderD128`) of a function, with class link and /dev/dri nodes."""
        match = DRM_RE.fullmatch(minor_name)
        if match is None:
            raise ValueError(f"{minor_name!r} is not a DRM minor name")
        dev = function_dir(self.tree, bdf)
        if dev is None:
            raise ValueError(f"no PCI function {bdf}")
        minor = int(match.group(2))
        drm_dir = f"{dev}/drm/{minor_name}"
        self.tree.write(f"{drm_dir}/dev", f"{DRM_MAJOR}:{minor}\n")
        self.tree.write(
            f"{drm_dir}/uevent",
            f"MAJOR={DRM_MAJOR}\nMINOR={minor}\nDEVNAME=dri/{minor_name}\nDEVTYPE=drm_minor\n",
        )
        self.tree.link(f"{drm_dir}/device", dev)
        self.tree.link(f"/sys/class/drm/{minor_name}", drm_dir)
        self.tree.node(f"/dev/dri/{minor_name}")
        kind = "card" if match.group(1) == "card" else "render"
        self.tree.link(f"/dev/dri/by-path/pci-{bdf}-{kind}", f"/dev/dri/{minor_name}")
        return minor_name

    def numa(self, node: int, cpulist: str) -> str:
        """A NUMA node with its CPUs, as /sys/bus/node/devices/node<N> shows it."""
        node_dir = f"/sys/devices/system/node/node{node}"
        self.tree.write(f"{node_dir}/cpulist", f"{cpulist}\n")
        self.tree.link(f"/sys/bus/node/devices/node{node}", node_dir)
        return f"node{node}"

    def iommu(self, kind: str = "dmar0") -> str:
        """The IOMMU presence marker /sys/class/iommu/<kind> (dmar0 for Intel, ivhd0 for AMD)."""
        unit = f"/sys/devices/virtual/iommu/{kind}"
        self.tree.mkdir(unit)
        self.tree.link(f"/sys/class/iommu/{kind}", unit)
        return kind

    def device_node(self, host_path: str) -> str:
        """A device node stand-in (a regular file) such as /dev/kvm."""
        if not host_path.startswith("/dev/"):
            raise ValueError(f"{host_path!r} is not under /dev")
        self.tree.node(host_path)
        return host_path

    def pci_driver(self, name: str) -> str:
        """A loaded PCI driver with nothing bound yet (vfio-pci after `modprobe vfio-pci`)."""
        ensure_driver(self.tree, name)
        return name

    def module(self, name: str, parameters: Mapping[str, str] | None = None) -> str:
        """A loaded module under /sys/module, with parameter files."""
        self.tree.mkdir(f"/sys/module/{name}")
        for parameter, value in (parameters or {}).items():
            self.tree.write(f"/sys/module/{name}/parameters/{parameter}", f"{value}\n")
        return name
