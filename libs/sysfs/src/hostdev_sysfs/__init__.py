"""sysfs/devfs access under an injected root: synchronous, small, never escaping the root."""

from hostdev_sysfs.health import LinkState, device_number, read_aer_totals, read_links
from hostdev_sysfs.pci import PciFunction, group_members, list_functions, read_function
from hostdev_sysfs.root import HostRoot, PathEscapesRoot
from hostdev_sysfs.usb import UsbDevice, list_usb
from hostdev_sysfs.writer import FileWriter, ReadOnlyWriter, SysfsWriter

__all__ = [
    "FileWriter",
    "HostRoot",
    "LinkState",
    "PathEscapesRoot",
    "PciFunction",
    "ReadOnlyWriter",
    "SysfsWriter",
    "UsbDevice",
    "device_number",
    "group_members",
    "list_functions",
    "list_usb",
    "read_aer_totals",
    "read_function",
    "read_links",
]
