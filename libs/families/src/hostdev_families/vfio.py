"""Moving PCI functions to vfio-pci and back, through the kernel's sysfs interface."""

from __future__ import annotations

import errno

from hostdev_families.clock import SYSTEM_CLOCK, ThreadClock
from hostdev_families.errors import HostRefused
from hostdev_sysfs import HostRoot, SysfsWriter, read_function

VFIO_DRIVER = "vfio-pci"
DEV_VFIO = "/dev/vfio"
# udev creates /dev/vfio/<group> after the bind returns; real hosts take milliseconds.
NODE_WAIT_SECONDS = 5.0
NODE_POLL_SECONDS = 0.01


def _explain(err: OSError) -> str:
    name = errno.errorcode.get(err.errno or 0, str(err.errno))
    return f"{name} ({err.strerror or 'refused'})"


def _write(writer: SysfsWriter, device: str, path: str, data: str) -> None:
    try:
        writer.write(path, data)
    except OSError as err:
        raise HostRefused(
            device, f"kernel refused {data.strip()!r} -> {path}: {_explain(err)}"
        ) from err


def bind_vfio(root: HostRoot, writer: SysfsWriter, device: str, address: str) -> None:
    """Bind one function to vfio-pci: override, unbind the host driver, bind."""
    function = read_function(root, address)
    if function.driver == VFIO_DRIVER:
        return
    if not root.exists(f"/sys/bus/pci/drivers/{VFIO_DRIVER}"):
        raise HostRefused(
            device, "the vfio-pci driver is not loaded on this node (modprobe vfio-pci)"
        )
    _write(writer, device, f"/sys/bus/pci/devices/{address}/driver_override", VFIO_DRIVER)
    if function.driver is not None:
        _write(writer, device, f"/sys/bus/pci/devices/{address}/driver/unbind", address)
    _write(writer, device, f"/sys/bus/pci/drivers/{VFIO_DRIVER}/bind", address)
    if read_function(root, address).driver != VFIO_DRIVER:
        raise HostRefused(device, f"{address} did not bind to {VFIO_DRIVER}")


def restore_driver(
    root: HostRoot,
    writer: SysfsWriter,
    device: str,
    address: str,
    driver: str | None,
    override: str | None,
) -> None:
    """Put a function back on `driver` with its old driver_override; done when already there."""
    if not root.exists(f"/sys/bus/pci/devices/{address}"):
        return  # the function was removed (hot-unplug): nothing left to restore
    function = read_function(root, address)
    if function.driver == driver and function.driver_override == override:
        return
    if function.driver is not None and function.driver != driver:
        _write(writer, device, f"/sys/bus/pci/devices/{address}/driver/unbind", address)
    _write(writer, device, f"/sys/bus/pci/devices/{address}/driver_override", override or "\n")
    if driver is not None and read_function(root, address).driver is None:
        # drivers_probe lets the kernel pick the driver by ID, as at boot; a driver
        # bound by hand earlier is bound by name.
        _write(writer, device, "/sys/bus/pci/drivers_probe", address)
        if read_function(root, address).driver != driver:
            _write(writer, device, f"/sys/bus/pci/drivers/{driver}/bind", address)


def release_to_host(root: HostRoot, writer: SysfsWriter, device: str, address: str) -> None:
    """Let the kernel bind the function's own driver (by ID, as at boot)."""
    function = read_function(root, address)
    if function.driver is not None and function.driver != VFIO_DRIVER:
        return
    if function.driver is not None:
        _write(writer, device, f"/sys/bus/pci/devices/{address}/driver/unbind", address)
    _write(writer, device, f"/sys/bus/pci/devices/{address}/driver_override", "\n")
    _write(writer, device, "/sys/bus/pci/drivers_probe", address)


def wait_for_group_node(
    root: HostRoot, device: str, group: int, clock: ThreadClock = SYSTEM_CLOCK
) -> None:
    """Wait until /dev/vfio/<group> exists: the container runtime stats it."""
    deadline = clock.monotonic() + NODE_WAIT_SECONDS
    while not root.exists(f"{DEV_VFIO}/{group}"):
        if clock.monotonic() > deadline:
            raise HostRefused(device, f"{DEV_VFIO}/{group} did not appear after binding")
        clock.sleep(NODE_POLL_SECONDS)
