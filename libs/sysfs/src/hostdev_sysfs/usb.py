"""Reading USB devices (not interfaces, not root hubs) from sysfs under a root."""

from __future__ import annotations

import os
from dataclasses import dataclass

from hostdev_sysfs.root import HostRoot

USB_DEVICES = "/sys/bus/usb/devices"


@dataclass(frozen=True, slots=True)
class UsbDevice:
    """One USB device as sysfs describes it."""

    port: str  # bus-port path, e.g. 1-1 or 2-3.4: where it is plugged in
    vendor: str  # 046d (four lowercase hex digits)
    product: str
    busnum: int
    devnum: int
    serial: str = ""
    manufacturer: str = ""
    product_name: str = ""
    bcd_device: str = ""
    speed: str = ""

    @property
    def node(self) -> str:
        """The device node, /dev/bus/usb/BBB/DDD."""
        return f"/dev/bus/usb/{self.busnum:03d}/{self.devnum:03d}"


def _read(root: HostRoot, port: str, name: str) -> str:
    try:
        return root.read_text(f"{USB_DEVICES}/{port}/{name}").strip()
    except OSError:
        return ""


def list_usb(root: HostRoot) -> list[UsbDevice]:
    """Every USB device, sorted by port; hubs' root entries and interfaces are skipped."""
    base = root.path(USB_DEVICES)
    found = []
    for port in sorted(os.listdir(base)) if base.is_dir() else []:
        if port.startswith("usb") or ":" in port:
            continue  # root hubs are usbN; interfaces are <port>:<config>.<interface>
        vendor = _read(root, port, "idVendor")
        busnum, devnum = _read(root, port, "busnum"), _read(root, port, "devnum")
        if not vendor or not busnum.isdigit() or not devnum.isdigit():
            continue
        found.append(
            UsbDevice(
                port=port,
                vendor=vendor.lower(),
                product=_read(root, port, "idProduct").lower(),
                busnum=int(busnum),
                devnum=int(devnum),
                serial=_read(root, port, "serial"),
                manufacturer=_read(root, port, "manufacturer"),
                product_name=_read(root, port, "product"),
                bcd_device=_read(root, port, "bcdDevice"),
                speed=_read(root, port, "speed"),
            )
        )
    return found
