"""CDI spec Structs with the exact JSON keys of the CDI specification."""

from __future__ import annotations

import msgspec


class DeviceNode(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """A device node in the container (`hostPath` needs CDI 0.5.0)."""

    path: str
    host_path: str | None = None
    type: str | None = None
    major: int | None = None
    minor: int | None = None
    file_mode: int | None = None
    permissions: str | None = None
    uid: int | None = None
    gid: int | None = None


class Mount(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """A mount in the container (`type` needs CDI 0.4.0)."""

    host_path: str
    container_path: str
    options: tuple[str, ...] = ()
    type: str | None = None


class NetDevice(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A host interface moved into the container (CDI 1.1.0)."""

    host_interface_name: str
    name: str


class ContainerEdits(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """Edits applied to the OCI spec of a container that requests a device."""

    env: tuple[str, ...] = ()
    device_nodes: tuple[DeviceNode, ...] = ()
    mounts: tuple[Mount, ...] = ()
    additional_gids: tuple[int, ...] = ()
    net_devices: tuple[NetDevice, ...] = ()


class Device(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """One named device of a spec; `containerEdits` is required even when empty."""

    name: str
    container_edits: ContainerEdits  # required by the schema, so it has no default to omit
    annotations: dict[str, str] | None = None


class Spec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """A CDI spec file."""

    cdi_version: str
    kind: str
    devices: tuple[Device, ...]
    annotations: dict[str, str] | None = None
    container_edits: ContainerEdits | None = None
