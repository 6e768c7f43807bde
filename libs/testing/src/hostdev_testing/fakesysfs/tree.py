"""File primitives of a fake host tree: relative symlinks, device-node stand-ins, state, snapshots."""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import threading
from pathlib import Path

import msgspec

STATE_FILE = ".fakesysfs-state.json"
FAKE_STATE_PREFIX = ".fake"


class Netdev(msgspec.Struct):
    """A network interface a function exposes while bound to its native driver."""

    name: str
    address: str
    ifindex: int


class State(msgspec.Struct):
    """What the kernel knows but sysfs does not show: ID-table matches, netdevs, mdev capacity."""

    native_drivers: dict[str, str] = msgspec.field(default_factory=dict)
    netdevs: dict[str, Netdev] = msgspec.field(default_factory=dict)
    mdev_max: dict[str, int] = msgspec.field(default_factory=dict)
    # Test controls live here too, so a FakeKernel in another process (the preparer's)
    # refuses what the test asked for.
    refusals: dict[str, int] = msgspec.field(default_factory=dict)
    busy: list[str] = msgspec.field(default_factory=list)


def kernfs_target(target: str, link_dir: str) -> str:
    """The relative target sysfs stores: up to an ancestor of the target's parent, then down.

    Unlike `os.path.relpath`, a link to an ancestor still names it (`../../../0000:00:02.0`,
    never `../..`), as kernfs_get_target_path does.
    """
    target_parent = posixpath.dirname(target)
    base, ups = link_dir, 0
    while base != "/" and target_parent != base and not target_parent.startswith(base + "/"):
        base, ups = posixpath.dirname(base), ups + 1
    return "../" * ups + target[len(base) :].lstrip("/")


class Tree:
    """A host root seen through host paths (`/sys/...`); the builder and the fake kernel share it.

    Link and target arguments are real host paths (no symlink among their parents), so the
    relative target computed lexically is exactly the one the kernel would create.
    """

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()

    def path(self, host_path: str) -> Path:
        """The real path of a host path under the root."""
        return self.root / host_path.lstrip("/")

    def host_of(self, real: Path) -> str:
        """The host path of a real path under the root."""
        return "/" + real.relative_to(self.root).as_posix()

    def exists(self, host_path: str) -> bool:
        """Whether the path exists, following symlinks."""
        return self.path(host_path).exists()

    def lexists(self, host_path: str) -> bool:
        """Whether the path exists, dangling symlinks included."""
        return os.path.lexists(self.path(host_path))

    def is_link(self, host_path: str) -> bool:
        """Whether the path is a symlink."""
        return self.path(host_path).is_symlink()

    def is_dir(self, host_path: str) -> bool:
        """Whether the path is a directory (through symlinks)."""
        return self.path(host_path).is_dir()

    def resolve(self, host_path: str) -> str | None:
        """The real host path behind `host_path`, or None if it leaves the root or does not exist."""
        real = Path(os.path.realpath(self.path(host_path)))
        if real != self.root and self.root not in real.parents:
            return None
        return self.host_of(real) if real.exists() else None

    def read(self, host_path: str) -> str:
        """An attribute's text without its trailing newline."""
        return self.path(host_path).read_text().rstrip("\n")

    def write(self, host_path: str, content: str | bytes) -> None:
        """Create or replace a regular file, making its parents."""
        real = self.path(host_path)
        data = content if isinstance(content, bytes) else content.encode()
        try:
            real.write_bytes(data)
        except FileNotFoundError:
            # Parents are made only when missing: trees are built file by file, so this is hot.
            real.parent.mkdir(parents=True, exist_ok=True)
            real.write_bytes(data)

    def rewrite(self, host_path: str, content: str) -> None:
        """Change an attribute's text in one step, for attributes the kernel changes while a
        driver may be reading them: sysfs computes a read whole, so a reader never sees a
        truncated file, which `write` (truncate, then write) would show in between."""
        real = self.path(host_path)
        # One staging name per thread and process: two writers never share a half-written file.
        staging = real.with_name(f"{FAKE_STATE_PREFIX}-{os.getpid()}-{threading.get_ident()}")
        staging.write_bytes(content.encode())
        os.replace(staging, real)

    def mkdir(self, host_path: str) -> None:
        """Create a directory and its parents."""
        self.path(host_path).mkdir(parents=True, exist_ok=True)

    def link(self, host_path: str, target: str) -> None:
        """A symlink at `host_path` to `target`, relative the way sysfs writes them."""
        real = self.path(host_path)
        relative = kernfs_target(target, posixpath.dirname(host_path))
        try:
            real.symlink_to(relative)
        except FileNotFoundError:
            real.parent.mkdir(parents=True, exist_ok=True)
            real.symlink_to(relative)
        except FileExistsError:
            real.unlink()
            real.symlink_to(relative)

    def readlink(self, host_path: str) -> str | None:
        """A symlink's target as stored, or None if the path is not a symlink."""
        real = self.path(host_path)
        return os.readlink(real) if real.is_symlink() else None

    def link_name(self, host_path: str) -> str | None:
        """The basename of a symlink's target (a driver or group name), or None."""
        target = self.readlink(host_path)
        return None if target is None else posixpath.basename(target)

    def listdir(self, host_path: str) -> list[str]:
        """Entry names of a directory, sorted; empty if it does not exist."""
        real = self.path(host_path)
        return sorted(os.listdir(real)) if real.is_dir() else []

    def remove(self, host_path: str) -> None:
        """Remove a link, file, device node or whole directory; absent paths are fine."""
        real = self.path(host_path)
        if real.is_dir() and not real.is_symlink():
            shutil.rmtree(real)
        elif os.path.lexists(real):
            real.unlink()

    def node(self, host_path: str) -> None:
        """A device-node stand-in: a regular empty file, as without mknod privileges."""
        if not self.lexists(host_path):
            self.write(host_path, "")

    def char_node(self, host_path: str, major: int, minor: int) -> None:
        """A real character device node, replacing whatever was there in one step, as udev
        does (a new inode under the same name); needs CAP_MKNOD, so tests run as root."""
        real = self.path(host_path)
        real.parent.mkdir(parents=True, exist_ok=True)
        staging = real.with_name(f".{real.name}.new")
        try:
            os.mknod(staging, 0o660 | stat.S_IFCHR, os.makedev(major, minor))
        except PermissionError as err:
            raise PermissionError(
                f"making {host_path} ({major}:{minor}) needs CAP_MKNOD: run the tests as root"
            ) from err
        os.replace(staging, real)

    def remove_node(self, host_path: str) -> None:
        """Remove a device node and, as devtmpfs does, the directories it leaves empty."""
        self.remove(host_path)
        parent = posixpath.dirname(host_path)
        while parent not in ("/dev", "/") and self.is_dir(parent) and not self.listdir(parent):
            self.path(parent).rmdir()
            parent = posixpath.dirname(parent)

    def sweep_dangling(self, host_dir: str) -> None:
        """Remove every symlink under `host_dir` whose target is gone (the kernel never leaves any)."""
        for dirpath, dirnames, filenames in os.walk(self.path(host_dir)):
            for name in dirnames + filenames:
                entry = Path(dirpath) / name
                if entry.is_symlink() and not entry.exists():
                    entry.unlink()

    def load_state(self) -> State:
        """The kernel-side records the builder left next to the tree."""
        real = self.path(STATE_FILE)
        if not real.exists():
            return State()
        return msgspec.json.decode(real.read_bytes(), type=State)

    def save_state(self, state: State) -> None:
        """Persist the records, so a FakeKernel made later from the root alone finds them."""
        self.path(STATE_FILE).write_bytes(msgspec.json.encode(state))


def snapshot(root: Path) -> dict[str, str]:
    """The whole tree as relative path -> "dir", "link:<target>" or "file:<content>"."""
    base = root.resolve()
    picture: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for name in sorted(dirnames + filenames):
            entry = Path(dirpath) / name
            relative = entry.relative_to(base).as_posix()
            if name.startswith(FAKE_STATE_PREFIX):
                # The fakes' own files, not part of the tree: their records (kernel, netlink)
                # at the root, and a `rewrite` staging file beside its attribute, left when
                # the writing process is killed before the rename (no kernel has one).
                continue
            mode = entry.lstat().st_mode
            if entry.is_symlink():
                picture[relative] = "link:" + os.readlink(entry)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                # Never read a node: it would reach the host's real device.
                rdev = entry.lstat().st_rdev
                picture[relative] = f"node:{os.major(rdev)}:{os.minor(rdev)}"
            elif entry.is_dir():
                picture[relative] = "dir"
            else:
                picture[relative] = "file:" + entry.read_bytes().decode("latin-1")
    return picture
