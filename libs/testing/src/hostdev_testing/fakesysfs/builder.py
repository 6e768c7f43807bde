"""FakeSysfs: builds a host's sysfs and devfs with the kernel's exact relative symlinks."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hostdev_testing.fakesysfs import aer
from hostdev_testing.fakesysfs import attributes as attrs
from hostdev_testing.fakesysfs import mdev as mdevs
from hostdev_testing.fakesysfs import usb as usbs
from hostdev_testing.fakesysfs.host import HostPieces
from hostdev_testing.fakesysfs.pci import (
    IOMMU_GROUPS,
    PCI_DEVICES,
    VIABLE_DRIVERS,
    attach,
    detach,
    ensure_driver,
    function_dir,
    join_group,
    leave_group,
)
from hostdev_testing.fakesysfs.tree import Netdev, State, Tree

BDF_RE = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")
PORT_RE = re.compile(r"(\d+)-(\d+(?:\.\d+)*)")
# Groups for bridges and controllers made implicitly, kept clear of the numbers tests choose.
AUTO_GROUP_BASE = 100


@dataclass(frozen=True)
class MdevType:
    """One `mdev_supported_types/<type_id>` entry; `available_instances` is the type's maximum."""

    type_id: str
    name: str
    available_instances: int
    device_api: str = "vfio-pci"
    description: str = ""


class FakeSysfs(HostPieces):
    """Builds `<root>/sys` and `<root>/dev` the way the kernel would show the described host."""

    def __init__(self, root: Path) -> None:
        self.tree = Tree(root)
        self.root = self.tree.root
        # Both always exist on a host, so pruning emptied /dev subdirectories never reaches them.
        self.tree.mkdir("/sys")
        self.tree.mkdir("/dev")

    def pci(
        self,
        bdf: str,
        *,
        vendor: int | str,
        device: int | str,
        class_code: int | str,
        iommu_group: int | None,
        driver: str | None = None,
        numa_node: int = -1,
        pcie_root: str = "pci0000:00",
        bridge: str | None = None,
        subsystem_vendor: int | str | None = None,
        subsystem_device: int | str | None = None,
        revision: int | str = "0x00",
        native_driver: str | None = None,
        netdev: str | None = None,
    ) -> str:
        """A PCI function, bound to `driver` if given; `native_driver` defaults to `driver`.

        A function bound to something other than its native driver gets that driver in
        `driver_override`, the only way the kernel would have bound it. `netdev` names the
        interface the native driver registers.
        """
        if not BDF_RE.fullmatch(bdf) or function_dir(self.tree, bdf) is not None:
            raise ValueError(f"{bdf!r} is malformed or exists already")
        parent = self._parent_dir(pcie_root, bridge, numa_node)
        dev = f"{parent}/{bdf}"
        ids = (
            attrs.parse_hex(vendor),
            attrs.parse_hex(device),
            attrs.parse_hex(class_code),
            attrs.parse_hex(revision),
        )
        subsys = (
            ids[0] if subsystem_vendor is None else attrs.parse_hex(subsystem_vendor),
            ids[1] if subsystem_device is None else attrs.parse_hex(subsystem_device),
        )
        self._attributes(dev, bdf, ids, subsys, numa_node)
        native = native_driver or driver
        override = driver if driver is not None and driver != native else None
        self.tree.write(f"{dev}/driver_override", f"{override or '(null)'}\n")
        if iommu_group is not None:
            join_group(self.tree, dev, iommu_group)
        self._bus_entries()
        self.tree.link(f"{PCI_DEVICES}/{bdf}", dev)
        state = self._record(bdf, native, netdev)
        if driver is not None:
            attach(self.tree, dev, driver, state)
        return bdf

    def sriov_pf(
        self,
        bdf: str,
        *,
        vendor: int | str,
        device: int | str,
        vf_device: int | str,
        num_vfs: int,
        driver: str,
        vf_driver: str,
        iommu_group: int,
        first_vf_iommu_group: int,
        total_vfs: int = 64,
        numa_node: int = -1,
        pcie_root: str = "pci0000:00",
        bridge: str | None = None,
        netdev: str = "ens1f0",
        vf_offset: int = 16,
        vf_stride: int = 1,
        vf_drivers: Sequence[str | None] | None = None,
        class_code: int | str = 0x020000,
    ) -> list[str]:
        """An SR-IOV PF with `num_vfs` VFs enabled; returns the VF BDFs in VF-index order.

        Each VF is in its own IOMMU group; `vf_drivers` overrides the per-VF binding (None
        leaves a VF unbound), while `vf_driver` stays every VF's native driver.
        """
        drivers = list(vf_drivers) if vf_drivers is not None else [vf_driver] * num_vfs
        if len(drivers) != num_vfs or num_vfs > total_vfs:
            raise ValueError("vf_drivers must list num_vfs entries, and num_vfs <= total_vfs")
        self.pci(
            bdf,
            vendor=vendor,
            device=device,
            class_code=class_code,
            driver=driver,
            iommu_group=iommu_group,
            netdev=netdev,
            numa_node=numa_node,
            pcie_root=pcie_root,
            bridge=bridge,
        )
        pf_dir = self._dir(bdf)
        sriov = {
            "sriov_totalvfs": total_vfs,
            "sriov_numvfs": num_vfs,
            "sriov_offset": vf_offset,
            "sriov_stride": vf_stride,
            "sriov_vf_device": f"{attrs.parse_hex(vf_device):04x}",
            "sriov_drivers_autoprobe": 1,
        }
        for attribute, value in sriov.items():
            self.tree.write(f"{pf_dir}/{attribute}", f"{value}\n")
        vfs = attrs.vf_bdfs(bdf, num_vfs, vf_offset, vf_stride)
        for index, (vf, vf_bound) in enumerate(zip(vfs, drivers, strict=True)):
            self.pci(
                vf,
                vendor=vendor,
                device=vf_device,
                class_code=class_code,
                driver=vf_bound,
                iommu_group=first_vf_iommu_group + index,
                native_driver=vf_driver,
                netdev=None if vf_driver in VIABLE_DRIVERS else f"{netdev}v{index}",
                numa_node=numa_node,
                pcie_root=pcie_root,
                bridge=bridge,
            )
            self.tree.link(f"{self._dir(vf)}/physfn", pf_dir)
            self.tree.link(f"{pf_dir}/virtfn{index}", self._dir(vf))
        return vfs

    def mdev_parent(self, bdf: str, types: Sequence[MdevType]) -> list[str]:
        """Make an existing function an mdev parent offering `types`; returns the type ids."""
        parent = self._dir(bdf)
        mdevs.ensure_bus(self.tree)
        state = self.tree.load_state()
        for mdev_type in types:
            type_dir = mdevs.type_dir(parent, mdev_type.type_id)
            self.tree.write(f"{type_dir}/name", f"{mdev_type.name}\n")
            self.tree.write(f"{type_dir}/device_api", f"{mdev_type.device_api}\n")
            description = mdev_type.description
            self.tree.write(f"{type_dir}/description", description.rstrip("\n") + "\n")
            self.tree.write(f"{type_dir}/create", "")
            self.tree.mkdir(f"{type_dir}/devices")
            key = mdevs.capacity_key(parent, mdev_type.type_id)
            state.mdev_max[key] = mdev_type.available_instances
        self.tree.save_state(state)
        for mdev_type in types:
            mdevs.refresh_available(self.tree, parent, mdev_type.type_id)
        self.tree.link(f"/sys/class/mdev_bus/{bdf}", parent)
        return [mdev_type.type_id for mdev_type in types]

    def mdev(self, parent_bdf: str, type_id: str, uuid: str, iommu_group: int) -> str:
        """A pre-existing mdev instance, exactly as the kernel makes one on `create`."""
        parent = self._dir(parent_bdf)
        if not mdevs.UUID_RE.fullmatch(uuid) or uuid != uuid.lower():
            raise ValueError(f"{uuid!r} is not a lower-case UUID")
        if mdevs.instance_dir(self.tree, uuid) is not None:
            raise ValueError(f"mdev {uuid} exists already")
        if self.tree.is_dir(f"{IOMMU_GROUPS}/{iommu_group}"):
            raise ValueError(f"an mdev gets a group of its own; {iommu_group} is taken")
        if mdevs.available(self.tree, parent, type_id) <= 0:
            raise ValueError(f"type {type_id} of {parent_bdf} has no instances left")
        mdevs.create(self.tree, parent, type_id, uuid, iommu_group)
        return uuid

    def usb(
        self,
        port_path: str,
        *,
        busnum: int,
        devnum: int,
        vendor: int | str,
        product: int | str,
        bcd_device: str = "0100",
        serial: str | None = None,
        manufacturer: str | None = None,
        product_name: str | None = None,
        speed: str = "480",
        controller_bdf: str = "0000:00:14.0",
        interface_class: str = "ff",
    ) -> str:
        """A USB device on `port_path` (`1-1`, `2-3.4`), making controller and root hub if missing."""
        match = PORT_RE.fullmatch(port_path)
        if match is None or int(match.group(1)) != busnum:
            raise ValueError(f"port {port_path!r} is malformed or not on bus {busnum}")
        if usbs.device_dir(self.tree, port_path) or self.tree.lexists(
            usbs.dev_node(busnum, devnum)
        ):
            raise ValueError(f"USB {port_path} or {busnum}:{devnum} exists already")
        if function_dir(self.tree, controller_bdf) is None:
            self.pci(
                controller_bdf,
                vendor=0x8086,
                device=0xA36D,
                class_code=0x0C0330,
                driver="xhci_hcd",
                iommu_group=self._auto_group(),
            )
        hub = usbs.ensure_root_hub(self.tree, self._dir(controller_bdf), busnum, speed)
        parent_port = port_path.rpartition(".")[0]
        parent = usbs.device_dir(self.tree, parent_port) if parent_port else hub
        if parent is None:
            raise ValueError(f"hub {parent_port} is missing")
        ids = usbs.UsbIds(
            f"{attrs.parse_hex(vendor):04x}",
            f"{attrs.parse_hex(product):04x}",
            bcd_device,
            speed,
            serial,
            manufacturer,
            product_name,
            interface_class,
        )
        usbs.add_device(self.tree, parent, port_path, busnum, devnum, ids)
        return port_path

    def unplug_usb(self, port_path: str) -> None:
        """Unplug a USB device: its directory, bus links and usbfs node disappear."""
        dev = usbs.device_dir(self.tree, port_path)
        if dev is None:
            raise ValueError(f"no USB device on {port_path}")
        usbs.remove_device(self.tree, dev)

    def remove_pci(self, bdf: str) -> None:
        """Hot-unplug a function with its children, VFs, mdevs, DRM minors and every link to them."""
        dev = self._dir(bdf)
        children = [n for n in self.tree.listdir(dev) if BDF_RE.fullmatch(n)]
        vfs = [
            self.tree.link_name(f"{dev}/{n}")
            for n in self.tree.listdir(dev)
            if n.startswith("virtfn")
        ]
        for child in children + [vf for vf in vfs if vf is not None]:
            self.remove_pci(child)
        detach(self.tree, dev)
        for name in self.tree.listdir(dev):
            if mdevs.UUID_RE.fullmatch(name):
                mdevs.remove(self.tree, f"{dev}/{name}")
        for name in self.tree.listdir(f"{dev}/drm"):
            self.tree.remove_node(f"/dev/dri/{name}")
        leave_group(self.tree, dev)
        self.tree.remove(f"{PCI_DEVICES}/{bdf}")
        self.tree.remove(dev)
        self.tree.sweep_dangling("/sys")
        self.tree.sweep_dangling("/dev")
        state = self.tree.load_state()
        state.native_drivers.pop(bdf, None)
        state.netdevs.pop(bdf, None)
        state.mdev_max = {k: v for k, v in state.mdev_max.items() if not k.startswith(f"{bdf}/")}
        self.tree.save_state(state)

    def raise_aer(self, bdf: str, severity: str, error: str, count: int = 1) -> None:
        """The function reports `count` AER errors: `severity` is fatal, nonfatal or
        correctable, `error` a bit name ("DLP", "CmpltTO", "RxErr"); the counters rise."""
        aer.record(self.tree, self._dir(bdf), severity, error, count)

    def _record(self, bdf: str, native: str | None, netdev: str | None) -> State:
        # What the ID table would pick and which interface it registers: kernel knowledge
        # sysfs does not show, kept beside the tree for drivers_probe and rebinding.
        state = self.tree.load_state()
        if native is not None:
            state.native_drivers[bdf] = native
            ensure_driver(self.tree, native)
        if netdev is not None:
            ifindex = max((n.ifindex for n in state.netdevs.values()), default=1) + 1
            state.netdevs[bdf] = Netdev(netdev, attrs.mac(bdf), ifindex)
        self.tree.save_state(state)
        return state

    def _dir(self, bdf: str) -> str:
        found = function_dir(self.tree, bdf)
        if found is None:
            raise ValueError(f"no PCI function {bdf}")
        return found

    def _auto_group(self) -> int:
        used = {int(n) for n in self.tree.listdir(IOMMU_GROUPS) if n.isdigit()}
        return next(
            n for n in range(AUTO_GROUP_BASE, AUTO_GROUP_BASE + len(used) + 1) if n not in used
        )

    def _parent_dir(self, pcie_root: str, bridge: str | None, numa_node: int) -> str:
        if bridge is None:
            self.tree.mkdir(f"/sys/devices/{pcie_root}")
            return f"/sys/devices/{pcie_root}"
        if function_dir(self.tree, bridge) is None:
            self.pci(
                bridge,
                vendor=0x8086,
                device=0x2030,
                class_code=0x060400,
                driver="pcieport",
                iommu_group=self._auto_group(),
                numa_node=numa_node,
                pcie_root=pcie_root,
            )
        parent = self._dir(bridge)
        if not parent.startswith(f"/sys/devices/{pcie_root}/"):
            raise ValueError(f"bridge {bridge} is not under {pcie_root}")
        return parent

    def _bus_entries(self) -> None:
        for attribute in ("drivers_probe", "rescan"):
            if not self.tree.lexists(f"/sys/bus/pci/{attribute}"):
                self.tree.write(f"/sys/bus/pci/{attribute}", "")
        self.tree.mkdir("/sys/bus/pci/drivers")

    def _attributes(
        self, dev: str, bdf: str, ids: attrs.PciIds, subsys: tuple[int, int], numa: int
    ) -> None:
        vendor, device, class_code, revision = ids
        files = {
            "vendor": f"0x{vendor:04x}",
            "device": f"0x{device:04x}",
            "class": f"0x{class_code:06x}",
            "subsystem_vendor": f"0x{subsys[0]:04x}",
            "subsystem_device": f"0x{subsys[1]:04x}",
            "revision": f"0x{revision:02x}",
            "numa_node": str(numa),
            "uevent": attrs.uevent(bdf, ids, subsys).rstrip("\n"),
            "resource": attrs.resource(bdf).rstrip("\n"),
        }
        for attribute, value in files.items():
            self.tree.write(f"{dev}/{attribute}", f"{value}\n")
        self.tree.write(f"{dev}/config", attrs.config(ids, subsys))
        aer.create(self.tree, dev)
