"""The device selection file: which host devices each family offers, and how."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

# A device name is a ResourceSlice device name and a KV key part: a DNS label.
DeviceName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]


class HostPathSpec(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One host device node or path, or a glob of them.

    path:          absolute host path; a glob (`/dev/dri/renderD*`) gives one device per match.
    name:          device name, a DNS label (`kvm`); derived from the path when absent (not
                   allowed with a glob).
    type:          `device` (a device node) or `mount` (a file, directory or socket, bind-mounted).
    shared:        many claims may hold it at once (published with allowMultipleAllocations).
    containerPath: where it appears in the container; the host path when absent.
    permissions:   cgroup permissions for device nodes, a subset of `rwm`.
    readOnly:      bind-mount read-only.
    """

    path: str
    name: DeviceName | None = None
    type: Literal["device", "mount"] = "device"
    shared: bool = False
    container_path: str | None = None
    permissions: str = "rw"
    read_only: bool = False


class PciSelector(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """PCI functions to offer for VFIO passthrough; every given field must match.

    vendor, device: IDs with or without `0x` (`10de`, `0x10de`).
    class:          a class code prefix (`0x0302` matches every 3D controller).
    address:        a PCI address or a glob of them (`0000:3b:*`).
    """

    vendor: str | None = None
    device: str | None = None
    class_: str | None = msgspec.field(default=None, name="class")
    address: str | None = None


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
