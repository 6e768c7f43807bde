"""FakeKernel: a SysfsWriter that performs each write and the kernel's reaction synchronously."""

from __future__ import annotations

import errno
import fcntl
import os
import posixpath
import threading
from pathlib import Path, PurePosixPath

from hostdev_events import killpoints
from hostdev_testing.fakesysfs import mdev as mdevs
from hostdev_testing.fakesysfs.pci import (
    PCI_DRIVERS,
    attach,
    detach,
    driver_of,
    function_dir,
    group_of,
    group_viable,
    is_bridge,
    lowest_free_group,
    override_of,
)
from hostdev_testing.fakesysfs.tree import Tree

# One page minus the terminator: longer driver_override values get EINVAL.
OVERRIDE_MAX = 4095
# Write-only or writable attributes the fake accepts without acting on them.
ACCEPTED_NOOPS = frozenset({"rescan", "uevent"})
# Writable in the kernel but not modelled here; writes fail loudly instead of passing silently.
UNMODELLED = frozenset({"new_id", "remove_id"})

LOCK_FILE = ".fakesysfs.lock"  # the snapshot skips every ".fake*" name
_WRITE_LOCK = threading.Lock()


def _fail(code: int, host_path: str) -> OSError:
    return OSError(code, os.strerror(code), host_path)


def _sysfs_string(data: str) -> str:
    # sysfs_streq and friends accept one trailing newline; the kernel ignores it.
    return data[:-1] if data.endswith("\n") else data


class FakeKernel:
    """Implements `hostdev_sysfs.SysfsWriter` over a fake tree, refusing writes as the kernel does.

    `writes` records every attempted write in order, refused ones included.
    """

    def __init__(self, root: Path) -> None:
        self.tree = Tree(root)
        self.writes: list[tuple[str, str]] = []

    def refuse(self, host_path: str, code: int) -> None:
        """Make the next write to `host_path` (or to the same file through links) fail with `code`."""
        state = self.tree.load_state()
        state.refusals[host_path] = code
        self.tree.save_state(state)

    def busy(self, bdf_or_uuid: str) -> None:
        """Make unbinding that function or removing that mdev fail with EBUSY until released."""
        state = self.tree.load_state()
        if bdf_or_uuid not in state.busy:
            state.busy.append(bdf_or_uuid)
        self.tree.save_state(state)

    def release(self, bdf_or_uuid: str) -> None:
        """Undo `busy`."""
        state = self.tree.load_state()
        state.busy = [b for b in state.busy if b != bdf_or_uuid]
        self.tree.save_state(state)

    def _is_busy(self, name: str) -> bool:
        return name in self.tree.load_state().busy

    def group_viable(self, group: int | str) -> bool:
        """Whether VFIO could use the group: every member unbound or on a VFIO-friendly driver."""
        return group_viable(self.tree, group)

    def write(self, host_path: str, data: str) -> None:
        """One write(2) of `data` to a sysfs attribute, with the kernel's reaction or its errno.

        The kernel serialises its reactions (device and driver locks); so does the fake,
        across threads and processes, with a lock file next to its state.
        """
        # Under killpoints.UNTORN: a kill from another thread waits for the reaction to end,
        # as the kernel completes a write whatever then happens to the writer.
        with killpoints.UNTORN, _WRITE_LOCK, open(self.tree.path(LOCK_FILE), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._write(host_path, data)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        # The kernel has acted: the preparer's process may die before it records the write.
        killpoints.reached(killpoints.SYSFS_WRITE)

    def _write(self, host_path: str, data: str) -> None:
        self.writes.append((host_path, data))
        pure = PurePosixPath(host_path)
        if not pure.is_absolute() or ".." in pure.parts:
            raise _fail(errno.ENOENT, host_path)
        real = self.tree.resolve(host_path) if self.tree.lexists(host_path) else None
        self._take_refusal(host_path, real)
        if real is None:
            raise _fail(errno.ENOENT, host_path)
        if self.tree.is_dir(real):
            raise _fail(errno.EISDIR, host_path)
        self._dispatch(host_path, real, data)

    def _take_refusal(self, host_path: str, real: str | None) -> None:
        state = self.tree.load_state()
        for refused, code in list(state.refusals.items()):
            refused_real = self.tree.resolve(refused) if self.tree.lexists(refused) else None
            if refused == host_path or (real is not None and refused_real == real):
                del state.refusals[refused]
                self.tree.save_state(state)
                raise _fail(code, host_path)

    def _dispatch(self, host_path: str, real: str, data: str) -> None:
        parent, name = posixpath.split(real)
        if real == "/sys/bus/pci/drivers_probe":
            self._drivers_probe(host_path, _sysfs_string(data))
        elif posixpath.dirname(parent) == PCI_DRIVERS and name in ("bind", "unbind"):
            driver = posixpath.basename(parent)
            handler = self._bind if name == "bind" else self._unbind
            handler(host_path, driver, _sysfs_string(data))
        elif name == "driver_override":
            self._driver_override(host_path, parent, data)
        elif (
            name == "create"
            and posixpath.basename(posixpath.dirname(parent)) == "mdev_supported_types"
        ):
            self._mdev_create(host_path, parent, data)
        elif name == "remove" and self.tree.is_link(f"{parent}/mdev_type"):
            self._mdev_remove(host_path, parent, data)
        elif name == "sriov_numvfs":
            self._sriov_numvfs(host_path, parent, data)
        elif name == "sriov_drivers_autoprobe":
            self._sriov_autoprobe(host_path, real, data)
        elif name in ACCEPTED_NOOPS:
            return
        elif name in UNMODELLED:
            raise _fail(errno.EOPNOTSUPP, host_path)
        else:
            # kernfs refuses opening an attribute without a store method for writing.
            raise _fail(errno.EACCES, host_path)

    def _driver_override(self, host_path: str, dev: str, data: str) -> None:
        if len(data) >= OVERRIDE_MAX:
            raise _fail(errno.EINVAL, host_path)
        # driver_set_override keeps the text up to the first newline; empty clears it.
        value = data.split("\n", 1)[0].split("\0", 1)[0]
        self.tree.rewrite(f"{dev}/driver_override", f"{value or '(null)'}\n")

    def _bind(self, host_path: str, driver: str, bdf: str) -> None:
        dev = function_dir(self.tree, bdf)
        if dev is None or not self._matches(dev, bdf, driver):
            raise _fail(errno.ENODEV, host_path)
        if driver_of(self.tree, dev) is not None:
            raise _fail(errno.EBUSY, host_path)
        code = self._probe_error(dev, driver)
        if code:
            raise _fail(code, host_path)
        attach(self.tree, dev, driver, self.tree.load_state())

    def _unbind(self, host_path: str, driver: str, bdf: str) -> None:
        dev = function_dir(self.tree, bdf)
        if dev is None or driver_of(self.tree, dev) != driver:
            raise _fail(errno.ENODEV, host_path)
        if self._is_busy(bdf):
            raise _fail(errno.EBUSY, host_path)
        detach(self.tree, dev)

    def _drivers_probe(self, host_path: str, bdf: str) -> None:
        dev = function_dir(self.tree, bdf)
        if dev is None:
            raise _fail(errno.ENODEV, host_path)
        if driver_of(self.tree, dev) is not None:
            return
        # The override, when set, is the only candidate; otherwise the ID table decides.
        driver = override_of(self.tree, dev) or self.tree.load_state().native_drivers.get(bdf)
        loaded = driver is not None and self.tree.is_dir(f"{PCI_DRIVERS}/{driver}")
        # A failing probe leaves the device unbound without failing the write.
        if driver is not None and loaded and not self._probe_error(dev, driver):
            attach(self.tree, dev, driver, self.tree.load_state())

    def _matches(self, dev: str, bdf: str, driver: str) -> bool:
        override = override_of(self.tree, dev)
        if override is not None:
            return driver == override
        return self.tree.load_state().native_drivers.get(bdf) == driver

    def _probe_error(self, dev: str, driver: str) -> int:
        if driver != "vfio-pci":
            return 0
        # vfio_pci_probe refuses type 1 headers; VFIO cannot register a device without a group.
        if is_bridge(self.tree, dev) or group_of(self.tree, dev) is None:
            return errno.EINVAL
        return 0

    def _mdev_create(self, host_path: str, type_path: str, data: str) -> None:
        uuid = _sysfs_string(data)
        if not mdevs.UUID_RE.fullmatch(uuid):
            raise _fail(errno.EINVAL, host_path)
        uuid = uuid.lower()
        if mdevs.instance_dir(self.tree, uuid) is not None:
            raise _fail(errno.EEXIST, host_path)
        parent = posixpath.dirname(posixpath.dirname(type_path))
        type_id = posixpath.basename(type_path)
        if mdevs.available(self.tree, parent, type_id) <= 0:
            raise _fail(errno.ENOSPC, host_path)
        mdevs.create(self.tree, parent, type_id, uuid, lowest_free_group(self.tree))

    def _mdev_remove(self, host_path: str, inst: str, data: str) -> None:
        try:
            value = int(data.strip())
        except ValueError:
            raise _fail(errno.EINVAL, host_path) from None
        if value == 0:
            return
        if self._is_busy(posixpath.basename(inst)):
            raise _fail(errno.EBUSY, host_path)
        mdevs.remove(self.tree, inst)

    def _sriov_numvfs(self, host_path: str, pf: str, data: str) -> None:
        try:
            wanted = int(data.strip())
        except ValueError:
            raise _fail(errno.EINVAL, host_path) from None
        # Asking for the current count is a no-op in the kernel too; changing it is not modelled.
        if wanted != int(self.tree.read(f"{pf}/sriov_numvfs")):
            raise _fail(errno.EOPNOTSUPP, host_path)

    def _sriov_autoprobe(self, host_path: str, real: str, data: str) -> None:
        value = data.strip()
        if value not in ("0", "1"):
            raise _fail(errno.EINVAL, host_path)
        self.tree.rewrite(real, f"{value}\n")
