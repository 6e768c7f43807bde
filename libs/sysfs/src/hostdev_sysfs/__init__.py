"""sysfs/devfs access under an injected root: synchronous, small, never escaping the root."""

from hostdev_sysfs.pci import PciFunction, group_members, list_functions, read_function
from hostdev_sysfs.root import HostRoot, PathEscapesRoot
from hostdev_sysfs.writer import FileWriter, SysfsWriter

__all__ = [
    "FileWriter",
    "HostRoot",
    "PathEscapesRoot",
    "PciFunction",
    "SysfsWriter",
    "group_members",
    "list_functions",
    "read_function",
]
