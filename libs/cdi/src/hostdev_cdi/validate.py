"""Checks a CDI reader would make, applied before a spec reaches the disk."""

from __future__ import annotations

import re

from hostdev_cdi import names
from hostdev_cdi.errors import InvalidSpec
from hostdev_cdi.spec import ContainerEdits, Spec
from hostdev_cdi.version import KNOWN_VERSIONS, minimum_version, version_key

_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_PERMISSIONS = re.compile(r"^(none|[rwm]{0,3})$")


def _check_edits(edits: ContainerEdits, where: str) -> None:
    for entry in edits.env:
        if not _ENV.match(entry):
            raise InvalidSpec(f"{where}: env entry {entry!r} is not NAME=value")
    for node in edits.device_nodes:
        if not node.path.startswith("/"):
            raise InvalidSpec(f"{where}: device node path {node.path!r} is not absolute")
        if node.host_path is not None and not node.host_path.startswith("/"):
            raise InvalidSpec(f"{where}: device node hostPath {node.host_path!r} is not absolute")
        if node.permissions is not None and not _PERMISSIONS.match(node.permissions):
            raise InvalidSpec(f"{where}: permissions {node.permissions!r} are not a subset of rwm")
    for net in edits.net_devices:
        if not net.host_interface_name or not net.name:
            raise InvalidSpec(f"{where}: a net device needs hostInterfaceName and name")
    for mount in edits.mounts:
        if not mount.container_path.startswith("/") or not mount.host_path.startswith("/"):
            raise InvalidSpec(f"{where}: mount paths must be absolute")


def validate(spec: Spec) -> None:
    """Raise InvalidSpec if a CDI reader would reject `spec`."""
    if spec.cdi_version not in KNOWN_VERSIONS:
        raise InvalidSpec(f"unknown cdiVersion {spec.cdi_version!r}")
    needed = minimum_version(spec)
    if version_key(needed) > version_key(spec.cdi_version):
        raise InvalidSpec(f"spec uses features of {needed} but declares {spec.cdi_version}")
    names.split_kind(spec.kind)
    if not spec.devices:
        raise InvalidSpec("a spec needs at least one device")
    seen: set[str] = set()
    for device in spec.devices:
        names.check_device_name(device.name)
        if device.name in seen:
            raise InvalidSpec(f"device {device.name!r} defined twice")
        seen.add(device.name)
        _check_edits(device.container_edits, f"device {device.name}")
    if spec.container_edits is not None:
        _check_edits(spec.container_edits, "spec")
