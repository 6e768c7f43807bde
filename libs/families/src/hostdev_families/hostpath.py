"""Host device nodes and paths (/dev/kvm, /dev/dri/*, /dev/net/tun, X11 sockets) from configuration."""

from __future__ import annotations

import glob as globlib
from collections.abc import Mapping
from typing import Any

from hostdev_devconfig import HostPathSpec
from hostdev_events.inventory import (
    Attribute,
    ContainerEdits,
    Device,
    DeviceNodeEdit,
    MountEdit,
    NotOffered,
)
from hostdev_events.plans import AnyPlan, HostPathPlan
from hostdev_families.base import (
    ATTR_FAMILY,
    ATTR_PATH,
    DISCOVERED,
    STD_PCI_BUS_ID,
    STD_PCIE_ROOT,
    Health,
    Survey,
    check_config,
    dns_label,
    own_plan,
)
from hostdev_sysfs import HostRoot, PathEscapesRoot, device_number

FAMILY = "hostpath"
DISCOVERED_RDEV = DISCOVERED + "rdev"


class HostPathFamily:
    """Configured host paths; nothing to do on the host but hand them over."""

    name = FAMILY
    blocking = False

    def __init__(self, root: HostRoot, specs: tuple[HostPathSpec, ...]) -> None:
        self.root = root
        self.specs = specs

    def discover(self) -> list[Device]:
        return self.survey().offered

    def survey(self) -> Survey:
        devices: dict[str, Device] = {}
        not_offered: list[NotOffered] = []
        for spec in self.specs:
            try:
                matches = self._matches(spec)
            except PathEscapesRoot as err:
                not_offered.append(_not_offered(spec.path, "path-outside-root", str(err)))
                continue
            if not matches:
                what = "matches nothing" if globlib.has_magic(spec.path) else "does not exist"
                reason = f"the configured path {spec.path} {what} on this host"
                not_offered.append(_not_offered(spec.path, "device-node-missing", reason))
            for host_path in matches:
                device = self._device(spec, host_path)
                if device.name in devices:
                    reason = f"device name {device.name} is already taken by another path"
                    not_offered.append(_not_offered(host_path, "duplicate-name", reason))
                    continue
                devices[device.name] = device
        return Survey(
            offered=sorted(devices.values(), key=lambda d: d.name), not_offered=not_offered
        )

    def _matches(self, spec: HostPathSpec) -> list[str]:
        if globlib.has_magic(spec.path):
            return self.root.glob(spec.path)
        return [spec.path] if self.root.exists(spec.path) else []

    def _device(self, spec: HostPathSpec, host_path: str) -> Device:
        is_glob = globlib.has_magic(spec.path)
        name = spec.name if spec.name and not is_glob else dns_label(host_path)
        container_path = spec.container_path if spec.container_path and not is_glob else host_path
        real = str(self.root.path(host_path))
        if spec.type == "device":
            edits = ContainerEdits(
                device_nodes=(
                    DeviceNodeEdit(
                        path=container_path, host_path=real, permissions=spec.permissions
                    ),
                )
            )
        else:
            edits = ContainerEdits(
                mounts=(
                    MountEdit(
                        host_path=real, container_path=container_path, read_only=spec.read_only
                    ),
                )
            )
        attributes = {
            ATTR_FAMILY: Attribute(string=FAMILY),
            "type": Attribute(string=spec.type),
            **self._pci_attributes(host_path),
        }
        if len(host_path) <= 64:
            attributes[ATTR_PATH] = Attribute(string=host_path)
        return Device(
            name=name,
            family=FAMILY,
            attributes=attributes,
            shareable=spec.shared,
            edits=edits,
            params={"path": host_path, "type": spec.type, **self._rdev(spec, host_path)},
        )

    def _rdev(self, spec: HostPathSpec, host_path: str) -> dict[str, str]:
        """The node's major:minor, for the health check to compare with later."""
        if spec.type != "device":
            return {}
        try:
            number = device_number(self.root, host_path)
        except OSError:
            return {}  # gone since the match: the health check says so
        return {} if number is None else {DISCOVERED_RDEV: number}

    def _pci_attributes(self, host_path: str) -> dict[str, Attribute]:
        """Standard PCI attributes for DRM nodes, whose sysfs entry links to a PCI function."""
        if not host_path.startswith("/dev/dri/"):
            return {}
        minor = host_path.rsplit("/", 1)[-1]
        try:
            pci = self.root.resolve(f"/sys/class/drm/{minor}/device")
        except (PathEscapesRoot, OSError):
            return {}
        bdf = pci.name
        host = self.root.host_path_of(pci)
        parts = host.split("/")
        if "devices" not in parts or not pci.exists():
            return {}
        top = parts[parts.index("devices") + 1] if len(parts) > parts.index("devices") + 1 else ""
        attrs = {STD_PCI_BUS_ID: Attribute(string=bdf)}
        if top.startswith("pci"):
            attrs[STD_PCIE_ROOT] = Attribute(string=top)
        return attrs

    def plan(self, device: Device, claim_uid: str, config: Mapping[str, Any]) -> AnyPlan:
        check_config(device.name, config, None)
        return HostPathPlan(device=device.name, edits=device.edits, attributes=device.attributes)

    def apply(self, plan: AnyPlan) -> AnyPlan:
        return own_plan(plan, HostPathPlan)  # access is all a host path needs

    def unprepare(self, plan: AnyPlan) -> None:
        own_plan(plan, HostPathPlan)

    def healthy(self, device: Device) -> Health:
        path = device.params.get("path", "/nonexistent")
        if not self.root.exists(path):
            return Health(problem=f"{path} is gone")
        was = device.params.get(DISCOVERED_RDEV)
        if was is None:
            return Health()
        # Another number is another device (a module reloaded with a new minor, a node
        # recreated by hand): containers given the old one can no longer open it.
        now = device_number(self.root, path)
        if now is None:
            return Health(problem=f"{path} is no longer a device node, was {was}")
        if now != was:
            return Health(problem=f"{path} is now {now}, was {was}")
        return Health()


def _not_offered(candidate: str, code: str, reason: str) -> NotOffered:
    return NotOffered(family=FAMILY, candidate=candidate, reason=reason, code=code)
