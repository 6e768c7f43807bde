"""Which file system a spec directory is on, read from mountinfo lines as the kernel writes them."""

from __future__ import annotations

import os
from pathlib import Path

from hostdev_cdi.filesystem import filesystem_type, in_memory, mounts

# Lines in the kernel's format: ID, parent, dev, root, mount point, options, optional
# fields (zero or more), "-", type, source, super options.
MOUNTINFO = "\n".join(
    [
        "22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw",
        "25 22 0:23 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,mode=755",
        "31 25 0:27 / /run/user/1000 rw shared:9 master:2 - tmpfs tmpfs rw",
        "40 22 253:2 / /var/lib/data\\040disk rw - xfs /dev/vdb rw",
        "41 22 0:30 / /srv rw - tmpfs tmpfs rw",
        "42 41 253:3 / /srv rw - ext4 /dev/vdc rw",
    ]
)


def _line(point: str, fstype: str) -> str:
    return f"90 22 0:90 / {point.replace(' ', chr(92) + '040')} rw - {fstype} none rw"


def test_mount_points_and_types_are_read_with_escapes_and_optional_fields() -> None:
    found = mounts(MOUNTINFO + "\nnot a mountinfo line\n")
    assert ("/run/user/1000", "tmpfs") in found
    assert ("/var/lib/data disk", "xfs") in found
    assert len(found) == 6


def test_the_longest_mount_point_decides() -> None:
    assert filesystem_type("/run/cdi", MOUNTINFO) == "tmpfs"
    assert filesystem_type("/run/user/1000/cdi", MOUNTINFO) == "tmpfs"
    assert filesystem_type("/var/lib/data disk/cdi", MOUNTINFO) == "xfs"
    assert filesystem_type("/var/lib/cdi", MOUNTINFO) == "ext4"
    # A prefix of the name is not a parent directory.
    assert filesystem_type("/running", MOUNTINFO) == "ext4"


def test_the_last_mount_over_a_point_wins() -> None:
    assert filesystem_type("/srv/cdi", MOUNTINFO) == "ext4"


def test_an_empty_table_names_no_file_system() -> None:
    assert filesystem_type("/run/cdi", "") is None


def test_in_memory_follows_symbolic_links_and_parents_not_made_yet(tmp_path: Path) -> None:
    memory = tmp_path / "memory"
    memory.mkdir()
    (tmp_path / "link").symlink_to(memory)
    table = tmp_path / "mountinfo"
    real = os.path.realpath(memory)
    table.write_text(MOUNTINFO + "\n" + _line(real, "tmpfs") + "\n")
    assert in_memory(memory / "cdi", table)
    assert in_memory(tmp_path / "link" / "not" / "yet" / "made", table)
    assert not in_memory(tmp_path / "elsewhere", table)
    table.write_text(MOUNTINFO + "\n" + _line(real, "ext4") + "\n")
    assert not in_memory(memory / "cdi", table)


def test_an_unreadable_mount_table_means_not_in_memory(tmp_path: Path) -> None:
    assert not in_memory(tmp_path, tmp_path / "no-mountinfo")
