"""The device selection file: which host devices each family offers, and how."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec


class HostPathSpec(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One host device node or path, or a glob of them.

    path:          absolute host path; a glob (`/dev/dri/renderD*`) gives one device per match.
    name:          device name; derived from the path when absent (not allowed with a glob).
    type:          `device` (a device node) or `mount` (a file, directory or socket, bind-mounted).
    shared:        many claims may hold it at once (published with allowMultipleAllocations).
    containerPath: where it appears in the container; the host path when absent.
    permissions:   cgroup permissions for device nodes, a subset of `rwm`.
    readOnly:      bind-mount read-only.
    """

    path: str
    name: str | None = None
    type: Literal["device", "mount"] = "device"
    shared: bool = False
    container_path: str | None = None
    permissions: str = "rw"
    read_only: bool = False


class DevicesConfig(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The whole selection file."""

    host_paths: tuple[HostPathSpec, ...] = ()


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
