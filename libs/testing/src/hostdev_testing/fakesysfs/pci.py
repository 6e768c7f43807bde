"""PCI binding state shared by the builder and the fake kernel: driver links, uevent, VFIO nodes."""

from __future__ import annotations

import posixpath

from hostdev_testing.fakesysfs.attributes import is_bridge_class
from hostdev_testing.fakesysfs.tree import State, Tree

PCI_DEVICES = "/sys/bus/pci/devices"
PCI_DRIVERS = "/sys/bus/pci/drivers"
IOMMU_GROUPS = "/sys/kernel/iommu_groups"
VFIO_DEV_CLASS = "/sys/class/vfio-dev"

# Drivers through which VFIO owns a group: while one of them holds a member, /dev/vfio/<g> exists.
VFIO_DRIVERS = frozenset({"vfio-pci", "vfio_mdev"})
# Drivers that leave DMA alone (driver_managed_dma), so they do not spoil a group for VFIO.
VIABLE_DRIVERS = VFIO_DRIVERS | {"pci-stub", "pcieport"}
# Driver name -> module name where they differ; None marks built-in drivers without a module link.
MODULES: dict[str, str | None] = {"pcieport": None, "xhci_hcd": "xhci_pci"}
# Character-device major the fake kernel hands to the iommufd cdevs (/dev/vfio/devices/vfio<N>).
VFIO_CDEV_MAJOR = 511


def function_dir(tree: Tree, bdf: str) -> str | None:
    """The real sysfs directory of a PCI function, or None if there is no such function."""
    if not tree.is_link(f"{PCI_DEVICES}/{bdf}"):
        return None
    return tree.resolve(f"{PCI_DEVICES}/{bdf}")


def driver_of(tree: Tree, dev_dir: str) -> str | None:
    """The bound driver's name, or None when unbound."""
    return tree.link_name(f"{dev_dir}/driver")


def group_of(tree: Tree, dev_dir: str) -> str | None:
    """The IOMMU group number (as text), or None without one."""
    return tree.link_name(f"{dev_dir}/iommu_group")


def override_of(tree: Tree, dev_dir: str) -> str | None:
    """driver_override's value, None when it reads `(null)`."""
    value = tree.read(f"{dev_dir}/driver_override")
    return None if value == "(null)" else value


def is_bridge(tree: Tree, dev_dir: str) -> bool:
    """Whether the function is a PCI-to-PCI bridge (type 1 header), which vfio-pci refuses."""
    return is_bridge_class(int(tree.read(f"{dev_dir}/class"), 16))


def ensure_driver(tree: Tree, name: str) -> str:
    """The driver's directory under /sys/bus/pci/drivers, as loading its module creates it."""
    drv_dir = f"{PCI_DRIVERS}/{name}"
    if tree.is_dir(drv_dir):
        return drv_dir
    for attribute in ("bind", "unbind", "new_id", "remove_id", "uevent"):
        tree.write(f"{drv_dir}/{attribute}", "")
    module = MODULES.get(name, name.replace("-", "_"))
    if module is not None:
        tree.mkdir(f"/sys/module/{module}")
        tree.link(f"{drv_dir}/module", f"/sys/module/{module}")
    if name == "vfio-pci":
        tree.mkdir(VFIO_DEV_CLASS)
        tree.node("/dev/vfio/vfio")
    return drv_dir


def ensure_group(tree: Tree, group: int | str, kind: str = "DMA-FQ") -> str:
    """The group's directory under /sys/kernel/iommu_groups."""
    group_dir = f"{IOMMU_GROUPS}/{group}"
    if not tree.is_dir(group_dir):
        tree.mkdir(f"{group_dir}/devices")
        tree.write(f"{group_dir}/type", f"{kind}\n")
    return group_dir


def join_group(tree: Tree, dev_dir: str, group: int | str, kind: str = "DMA-FQ") -> None:
    """Put a device into a group: its `iommu_group` link and the group's back-link."""
    group_dir = ensure_group(tree, group, kind)
    tree.link(f"{dev_dir}/iommu_group", group_dir)
    tree.link(f"{group_dir}/devices/{posixpath.basename(dev_dir)}", dev_dir)


def leave_group(tree: Tree, dev_dir: str) -> None:
    """Take a device out of its group; an emptied group disappears, as the kernel frees it."""
    group = group_of(tree, dev_dir)
    if group is None:
        return
    group_dir = f"{IOMMU_GROUPS}/{group}"
    tree.remove(f"{group_dir}/devices/{posixpath.basename(dev_dir)}")
    tree.remove(f"{dev_dir}/iommu_group")
    if not tree.listdir(f"{group_dir}/devices"):
        tree.remove(group_dir)
    sync_group_node(tree, group)


def group_members(tree: Tree, group: int | str) -> list[str]:
    """Real directories of the group's devices (PCI functions and mdevs)."""
    devices = f"{IOMMU_GROUPS}/{group}/devices"
    found = (tree.resolve(f"{devices}/{name}") for name in tree.listdir(devices))
    return [member for member in found if member is not None]


def lowest_free_group(tree: Tree) -> int:
    """The number the kernel's IDA would give the next group: the lowest one not in use."""
    used = {int(name) for name in tree.listdir(IOMMU_GROUPS) if name.isdigit()}
    return next(n for n in range(len(used) + 1) if n not in used)


def sync_group_node(tree: Tree, group: int | str) -> None:
    """/dev/vfio/<g> exists exactly while a member is held by a VFIO driver."""
    held = any(driver_of(tree, member) in VFIO_DRIVERS for member in group_members(tree, group))
    if held:
        tree.node(f"/dev/vfio/{group}")
    else:
        tree.remove_node(f"/dev/vfio/{group}")


def group_viable(tree: Tree, group: int | str) -> bool:
    """Whether VFIO could use the group: no member is held by a DMA-using host driver."""
    drivers = (driver_of(tree, member) for member in group_members(tree, group))
    return all(driver is None or driver in VIABLE_DRIVERS for driver in drivers)


def attach(tree: Tree, dev_dir: str, driver: str, state: State) -> None:
    """Bind an unbound function: links, uevent, and whatever the driver creates on probe."""
    bdf = posixpath.basename(dev_dir)
    drv_dir = ensure_driver(tree, driver)
    tree.link(f"{dev_dir}/driver", drv_dir)
    tree.link(f"{drv_dir}/{bdf}", dev_dir)
    _set_uevent_driver(tree, dev_dir, driver)
    if driver == "vfio-pci":
        _add_vfio_cdev(tree, dev_dir)
    netdev = state.netdevs.get(bdf)
    if netdev is not None and driver == state.native_drivers.get(bdf):
        _add_netdev(tree, dev_dir, netdev.name, netdev.address, netdev.ifindex)
    group = group_of(tree, dev_dir)
    if group is not None:
        sync_group_node(tree, group)


def detach(tree: Tree, dev_dir: str) -> None:
    """Unbind a function: the reverse of `attach`, including its driver's class children."""
    driver = driver_of(tree, dev_dir)
    if driver is None:
        return
    tree.remove(f"{PCI_DRIVERS}/{driver}/{posixpath.basename(dev_dir)}")
    tree.remove(f"{dev_dir}/driver")
    _set_uevent_driver(tree, dev_dir, None)
    for name in tree.listdir(f"{dev_dir}/vfio-dev"):
        tree.remove(f"{VFIO_DEV_CLASS}/{name}")
        tree.remove_node(f"/dev/vfio/devices/{name}")
    tree.remove(f"{dev_dir}/vfio-dev")
    for name in tree.listdir(f"{dev_dir}/net"):
        tree.remove(f"/sys/class/net/{name}")
    tree.remove(f"{dev_dir}/net")
    group = group_of(tree, dev_dir)
    if group is not None:
        sync_group_node(tree, group)


def _set_uevent_driver(tree: Tree, dev_dir: str, driver: str | None) -> None:
    # The driver core emits DRIVER= before the bus's own variables, and only while bound.
    lines = [line for line in tree.read(f"{dev_dir}/uevent").splitlines() if line]
    lines = [line for line in lines if not line.startswith("DRIVER=")]
    if driver is not None:
        lines.insert(0, f"DRIVER={driver}")
    tree.write(f"{dev_dir}/uevent", "\n".join(lines) + "\n")


def _add_vfio_cdev(tree: Tree, dev_dir: str) -> None:
    used = set(tree.listdir(VFIO_DEV_CLASS))
    minor = next(n for n in range(len(used) + 1) if f"vfio{n}" not in used)
    name = f"vfio{minor}"
    cdev_dir = f"{dev_dir}/vfio-dev/{name}"
    tree.write(f"{cdev_dir}/dev", f"{VFIO_CDEV_MAJOR}:{minor}\n")
    tree.write(
        f"{cdev_dir}/uevent",
        f"MAJOR={VFIO_CDEV_MAJOR}\nMINOR={minor}\nDEVNAME=vfio/devices/{name}\n",
    )
    tree.link(f"{VFIO_DEV_CLASS}/{name}", cdev_dir)
    tree.node(f"/dev/vfio/devices/{name}")


def _add_netdev(tree: Tree, dev_dir: str, name: str, address: str, ifindex: int) -> None:
    net_dir = f"{dev_dir}/net/{name}"
    tree.write(f"{net_dir}/address", f"{address}\n")
    tree.write(f"{net_dir}/operstate", "up\n")
    tree.write(f"{net_dir}/carrier", "1\n")
    tree.write(f"{net_dir}/ifindex", f"{ifindex}\n")
    tree.link(f"/sys/class/net/{name}", net_dir)
