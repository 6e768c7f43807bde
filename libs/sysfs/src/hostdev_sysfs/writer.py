"""Writes to sysfs: the one seam where the kernel reacts, so tests can put a fake kernel behind it."""

from __future__ import annotations

import errno
import os
from typing import Protocol

from hostdev_events import killpoints
from hostdev_sysfs.root import HostRoot


class SysfsWriter(Protocol):
    """Write `data` to a sysfs attribute given by its host path (`/sys/bus/pci/...`).

    Raises OSError with the kernel's errno (EBUSY, EINVAL, ENODEV, ENOSPC, ...) when
    the kernel refuses; when it returns, the kernel has acted on the write.
    """

    def write(self, host_path: str, data: str) -> None:
        """One write(2) of `data` to the attribute."""
        ...


class FileWriter:
    """The real thing: one write(2) per call, never creating or truncating a file."""

    def __init__(self, root: HostRoot) -> None:
        self.root = root

    def write(self, host_path: str, data: str) -> None:
        # sysfs attributes take one write(2); O_CREAT would turn a typo into a stray file.
        fd = os.open(self.root.path(host_path), os.O_WRONLY)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)
        killpoints.reached(killpoints.SYSFS_WRITE)


class ReadOnlyWriter:
    """For services that must never write sysfs (discovery): every write is refused."""

    def write(self, host_path: str, data: str) -> None:
        raise OSError(errno.EROFS, f"this service does not write sysfs ({host_path})")
