"""The device selection file: which host devices each family offers, and how."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

# A device name is a ResourceSlice device name and a KV key part: a DNS label.
DeviceName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]


class HostPathSpec(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One host device node or path, or a glob of them; or several paths as one device.

    path:          absolute host path; a glob (`/dev/dri/renderD*`) gives one device per match.
    paths:         instead of `path`: paths or globs handed over together as ONE device
                   (the iGPU's `/dev/dri/card0` and `/dev/dri/renderD128`, every node of
                   `/dev/vfio/*`); needs `name`; offered while at least one matches.
    name:          device name, a DNS label (`kvm`); derived from the path when absent (not
                   allowed with a glob).
    type:          `device` (a device node) or `mount` (a file, directory or socket, bind-mounted).
    shared:        many claims may hold it at once (published with allowMultipleAllocations).
    slots:         a shared device for at most this many claims at once (KEP-5075 consumable
                   capacity `slots`, each claim taking 1 unless it asks for more); implies
                   `shared`. Absent: unlimited (`/dev/kvm`).
    containerPath: where it appears in the container; the host path when absent (not with
                   a glob or `paths`).
    permissions:   cgroup permissions for device nodes, a subset of `rwm`.
    readOnly:      bind-mount read-only.
    env:           `NAME=value` variables set in the container with the device (`DISPLAY=:0`).
    """

    path: str = ""
    paths: tuple[str, ...] = ()
    name: DeviceName | None = None
    type: Literal["device", "mount"] = "device"
    shared: bool = False
    slots: int | None = None
    container_path: str | None = None
    permissions: str = "rw"
    read_only: bool = False
    env: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # msgspec turns a ValueError here into a ValidationError naming the entry.
        if bool(self.path) == bool(self.paths):
            raise ValueError("give exactly one of path and paths")
        if self.paths and not self.name:
            raise ValueError(f"paths {list(self.paths)} need a name")
        if self.paths and self.container_path:
            raise ValueError("containerPath cannot be used with paths")
        if self.slots is not None and not 1 <= self.slots <= MAX_SLOTS:
            raise ValueError(f"slots must be between 1 and {MAX_SLOTS}, not {self.slots}")
        for item in self.env:
            if "=" not in item or not item.partition("=")[0]:
                raise ValueError(f"env entry {item!r} is not NAME=value")

    @property
    def is_shared(self) -> bool:
        """Whether many claims may hold the device at once."""
        return self.shared or self.slots is not None

    @property
    def all_paths(self) -> tuple[str, ...]:
        """`paths`, or `path` alone."""
        return self.paths or (self.path,)


# A quantity the scheduler adds up per device; far above any real number of users.
MAX_SLOTS = 1_000_000


class PciSelector(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """PCI functions to offer for VFIO passthrough; every given field must match.

    vendor, device: IDs with or without `0x` (`10de`, `0x10de`).
    class:          a class code prefix (`0x0302` matches every 3D controller).
    address:        a PCI address or a glob of them (`0000:3b:*`).
    wholeGroup:     offer a matching function even when its IOMMU group holds functions no
                    selector offers, and move those too to vfio-pci while it is claimed (they
                    go back to their drivers on unprepare). Off by default: a function is
                    offered only when every other function of its group (bridges aside) is
                    offered too, so a claim never takes a device nobody asked for (on a real
                    host that can be the boot disk's controller).
    """

    vendor: str | None = None
    device: str | None = None
    class_: str | None = msgspec.field(default=None, name="class")
    address: str | None = None
    whole_group: bool = False


class SriovSelector(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Virtual functions of matching physical functions.

    pf:     the PF's PCI address or a glob; pfName: its network interface name.
    vendor, device: the PF's IDs.
    mode:   how a VF is handed out unless a claim's config says otherwise:
            `vfio` (bound to vfio-pci, for VMs and DPDK) or `netdevice` (a network interface).
    """

    pf: str | None = None
    pf_name: str | None = None
    vendor: str | None = None
    device: str | None = None
    mode: Literal["vfio", "netdevice"] = "vfio"


class MdevSelector(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Mediated device types (vGPU profiles) of matching parent devices.

    parent: the parent's PCI address or a glob; vendor, device: the parent's IDs.
    types:  type IDs (`nvidia-222`) or names (`GRID T4-1Q`) to offer; empty offers all.
    """

    parent: str | None = None
    vendor: str | None = None
    device: str | None = None
    types: tuple[str, ...] = ()


class UsbSelector(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """USB devices; every given field must match.

    vendor, product: IDs as sysfs shows them (`046d`, `c52b`).
    serial:          the serial number; port: the bus/port path (`1-1.2`) or a glob.
    """

    vendor: str | None = None
    product: str | None = None
    serial: str | None = None
    port: str | None = None


class ResourceSpec(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """An extended resource name offered through the classic device plugin API.

    name:    the resource name pods put in resources.limits (`intel.com/x11`).
    devices: inventory device names or globs (`kvm`, `pci-*`); empty means every device
             of `family`.
    family:  only devices of this family (`hostpath`, `pci`, `sriov`, `mdev`, `usb`).
    shares:  how many containers may use one device at once; more than 1 needs a shared
             device (`shared: true` host paths), which is then offered as that many IDs.
    """

    name: str
    devices: tuple[str, ...] = ()
    family: str | None = None
    shares: int = 1


class DevicesConfig(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The whole selection file."""

    host_paths: tuple[HostPathSpec, ...] = ()
    pci: tuple[PciSelector, ...] = ()
    sriov: tuple[SriovSelector, ...] = ()
    mdev: tuple[MdevSelector, ...] = ()
    usb: tuple[UsbSelector, ...] = ()
    resources: tuple[ResourceSpec, ...] = ()


class ConfigError(ValueError):
    """The selection file is unreadable or invalid; the message names the file and field."""


def load_config(path: Path) -> DevicesConfig:
    """Read a YAML (or JSON) selection file."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: {err.strerror}") from err
    try:
        return msgspec.yaml.decode(data, type=DevicesConfig)
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        raise ConfigError(f"{path}: {err}") from err
