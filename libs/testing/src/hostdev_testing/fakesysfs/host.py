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

    def device_node(
        self, host_path: str, major: int | None = None, minor: int | None = None
    ) -> str:
        """A device node such as /dev/kvm: with `major` and `minor` a real character device
        (its st_rdev is what health checks compare), else a stand-in regular file."""
        if not host_path.startswith("/dev/"):
            raise ValueError(f"{host_path!r} is not under /dev")
        if major is None or minor is None:
            self.tree.node(host_path)
        else:
            self.tree.char_node(host_path, major, minor)
        return host_path

    def replace_device_node(self, host_path: str, major: int, minor: int) -> str:
        """Recreate an existing node with another number (a module reloaded with a new
        dynamic minor, or a node made by hand)."""
        if not self.tree.lexists(host_path):
            raise ValueError(f"{host_path} does not exist")
        self.tree.char_node(host_path, major, minor)
        return host_path

    def link_down(self, ifname: str) -> str:
        """Pull the cable of a network interface: no carrier, operstate down."""
        return self._link(ifname, up=False)

    def link_up(self, ifname: str) -> str:
        """Carrier back: operstate up."""
        return self._link(ifname, up=True)

    def _link(self, ifname: str, *, up: bool) -> str:
        net_dir = self.tree.resolve(f"/sys/class/net/{ifname}")
        if net_dir is None:
            raise ValueError(f"no network interface {ifname}")
        self.tree.write(f"{net_dir}/carrier", "1\n" if up else "0\n")
        self.tree.write(f"{net_dir}/operstate", "up\n" if up else "down\n")
        return ifname

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
