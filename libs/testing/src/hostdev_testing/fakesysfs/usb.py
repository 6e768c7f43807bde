"""USB devices under an xHCI controller: root hubs, devices, interfaces, /dev/bus/usb nodes."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from hostdev_testing.fakesysfs.tree import Tree

USB_DEVICES = "/sys/bus/usb/devices"
USB_DRIVER_DIR = "/sys/bus/usb/drivers/usb"
USB_MAJOR = 189
LINUX_FOUNDATION = "1d6b"


@dataclass(frozen=True)
class UsbIds:
    """What a USB device reports about itself (strings exactly as sysfs shows them)."""

    vendor: str
    product: str
    bcd_device: str
    speed: str
    serial: str | None = None
    manufacturer: str | None = None
    product_name: str | None = None
    interface_class: str = "ff"


def device_dir(tree: Tree, name: str) -> str | None:
    """The real directory of a USB device or hub (`1-1`, `usb1`), or None."""
    return tree.resolve(f"{USB_DEVICES}/{name}")


def dev_node(busnum: int, devnum: int) -> str:
    """The usbfs node of a device: /dev/bus/usb/BBB/DDD."""
    return f"/dev/bus/usb/{busnum:03d}/{devnum:03d}"


def ensure_root_hub(tree: Tree, controller_dir: str, busnum: int, speed: str) -> str:
    """The root hub `usb<bus>` of a controller, made on first use."""
    hub = f"{controller_dir}/usb{busnum}"
    if tree.is_dir(hub):
        return hub
    superspeed = int(speed) >= 5000
    ids = UsbIds(
        vendor=LINUX_FOUNDATION,
        product="0003" if superspeed else "0002",
        bcd_device="0608",
        speed=speed if superspeed else "480",
        serial=posixpath.basename(controller_dir),
        manufacturer="Linux 6.8.0 xhci-hcd",
        product_name="xHCI Host Controller",
        interface_class="09",
    )
    _populate(tree, hub, f"usb{busnum}", f"{busnum}-0", busnum, 1, "0", ids)
    return hub


def add_device(
    tree: Tree, parent_dir: str, port_path: str, busnum: int, devnum: int, ids: UsbIds
) -> str:
    """A device on a hub port, with its first interface, bus links and usbfs node."""
    dev = f"{parent_dir}/{port_path}"
    devpath = port_path.split("-", 1)[1]
    _populate(tree, dev, port_path, port_path, busnum, devnum, devpath, ids)
    return dev


def remove_device(tree: Tree, dev: str) -> None:
    """Unplug a device and everything behind it (a hub's children too)."""
    real = tree.path(dev)
    for busnum_file in sorted(real.rglob("busnum")):
        unit = busnum_file.parent
        busnum = int((unit / "busnum").read_text())
        devnum = int((unit / "devnum").read_text())
        tree.remove_node(dev_node(busnum, devnum))
    tree.remove(dev)
    tree.sweep_dangling("/sys/bus/usb")


def _populate(
    tree: Tree,
    dev: str,
    name: str,
    interface_prefix: str,
    busnum: int,
    devnum: int,
    devpath: str,
    ids: UsbIds,
) -> None:
    files = {
        "idVendor": ids.vendor,
        "idProduct": ids.product,
        "bcdDevice": ids.bcd_device,
        "busnum": str(busnum),
        "devnum": str(devnum),
        "devpath": devpath,
        "speed": ids.speed,
        "serial": ids.serial,
        "manufacturer": ids.manufacturer,
        "product": ids.product_name,
    }
    for attribute, value in files.items():
        if value is not None:
            tree.write(f"{dev}/{attribute}", f"{value}\n")
    tree.write(f"{dev}/uevent", _uevent(busnum, devnum, ids))
    tree.mkdir(USB_DRIVER_DIR)
    tree.link(f"{dev}/driver", USB_DRIVER_DIR)
    tree.link(f"{USB_DRIVER_DIR}/{name}", dev)
    tree.link(f"{USB_DEVICES}/{name}", dev)
    interface = f"{interface_prefix}:1.0"
    iface_dir = f"{dev}/{interface}"
    tree.write(f"{iface_dir}/bInterfaceNumber", "00\n")
    tree.write(f"{iface_dir}/bInterfaceClass", f"{ids.interface_class}\n")
    tree.write(
        f"{iface_dir}/uevent",
        f"DEVTYPE=usb_interface\nPRODUCT={_product(ids)}\nTYPE=0/0/0\n"
        f"INTERFACE={int(ids.interface_class, 16)}/0/0\n",
    )
    tree.link(f"{USB_DEVICES}/{interface}", iface_dir)
    tree.node(dev_node(busnum, devnum))


def _product(ids: UsbIds) -> str:
    # The kernel prints PRODUCT= with %x: no padding, so 0x0781 becomes 781.
    return "/".join(f"{int(value, 16):x}" for value in (ids.vendor, ids.product, ids.bcd_device))


def _uevent(busnum: int, devnum: int, ids: UsbIds) -> str:
    minor = (busnum - 1) * 128 + (devnum - 1)
    return (
        f"MAJOR={USB_MAJOR}\nMINOR={minor}\nDEVNAME=bus/usb/{busnum:03d}/{devnum:03d}\n"
        f"DEVTYPE=usb_device\nDRIVER=usb\nPRODUCT={_product(ids)}\nTYPE=0/0/0\n"
        f"BUSNUM={busnum:03d}\nDEVNUM={devnum:03d}\n"
    )
