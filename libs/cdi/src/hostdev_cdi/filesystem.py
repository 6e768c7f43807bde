"""Which file system a directory is on, from the kernel's mount table.

The CDI writer writes a claim's specs on the event loop when its directory is in memory
(tmpfs, where `/var/run/cdi` is on nearly every distribution): there an atomic write with its
fsyncs takes tens of microseconds, while handing it to a worker thread and back costs the
loop several times that. On a disk an fsync may take milliseconds, so the writes stay on a
thread there.
"""

from __future__ import annotations

import os
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")

# File systems whose fsync never waits for a device.
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})


def _unescape(field: str) -> str:
    """Mount points in mountinfo escape space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mounts(mountinfo: str) -> list[tuple[str, str]]:
    """(mount point, file system type) of every line of a mountinfo text, in its order."""
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue  # not a mountinfo line
        separator = fields.index("-", 6)
        if len(fields) > separator + 1:
            found.append((_unescape(fields[4]), fields[separator + 1]))
    return found


def filesystem_type(path: str, mountinfo: str) -> str | None:
    """The type of the file system an absolute, resolved `path` is on, by `mountinfo`.

    The last mount over the longest matching mount point wins, as the kernel resolves paths.
    None when no mount covers it (an empty table).
    """
    best: tuple[int, str] | None = None
    for point, fstype in mounts(mountinfo):
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fstype)
    return best[1] if best else None


def _nearest_existing(directory: Path) -> Path:
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            return candidate
    return directory


def in_memory(directory: Path, mountinfo_path: Path = MOUNTINFO) -> bool:
    """Whether `directory` (or, not made yet, its nearest existing parent), symbolic links
    resolved, is on tmpfs or ramfs; False when the mount table cannot be read."""
    try:
        text = mountinfo_path.read_text()
    except OSError:
        return False
    path = os.path.realpath(_nearest_existing(directory.absolute()))
    return filesystem_type(path, text) in MEMORY_FILESYSTEMS
