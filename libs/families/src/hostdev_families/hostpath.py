"""Host device nodes and paths (/dev/kvm, /dev/dri/*, /dev/net/tun, X11 sockets) from configuration."""

from __future__ import annotations

import glob as globlib
from collections.abc import Mapping
from typing import Any

from hostdev_devconfig import HostPathSpec
from hostdev_events.inventory import (
    Attribute,
    ConsumableCapacity,
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
GROUP_PATHS = "paths"  # param: the configured paths and globs of a group, one per line
SLOTS = "slots"  # the consumable capacity of a shared host path with `slots: N`


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
            for device in self._devices(spec, not_offered):
                if device.name in devices:
                    reason = f"device name {device.name} is already taken by another path"
                    candidate = device.params.get("path", device.name)
                    not_offered.append(_not_offered(candidate, "duplicate-name", reason))
                    continue
                devices[device.name] = device
        return Survey(
            offered=sorted(devices.values(), key=lambda d: d.name), not_offered=not_offered
        )

    def _devices(self, spec: HostPathSpec, not_offered: list[NotOffered]) -> list[Device]:
        """The devices of one entry; what it cannot offer goes to `not_offered`."""
        if not spec.paths:
            matches = self._matches(spec.path, not_offered)
            if not matches:
                _missing(spec.path, not_offered)
            return [self._device(spec, (host_path,)) for host_path in matches]
        # One device for every path of the group, in the order given, each once.
        found = list(
            dict.fromkeys(m for pattern in spec.paths for m in self._matches(pattern, not_offered))
        )
        missing = [p for p in spec.paths if not globlib.has_magic(p) and p not in found]
        if not found or missing:
            # Half a group would hand over a GPU without its render node: offer nothing.
            for path in missing or spec.paths:
                _missing(path, not_offered, f" (needed by {spec.name})")
            return []
        return [self._device(spec, tuple(found))]

    def _matches(self, pattern: str, not_offered: list[NotOffered]) -> list[str]:
        """Host paths matching a configured path or glob; one outside the root is noted."""
        try:
            if globlib.has_magic(pattern):
                return self.root.glob(pattern)
            return [pattern] if self.root.exists(pattern) else []
        except PathEscapesRoot as err:
            not_offered.append(_not_offered(pattern, "path-outside-root", str(err)))
            return []

    def _device(self, spec: HostPathSpec, host_paths: tuple[str, ...]) -> Device:
        first = host_paths[0]
        single = not spec.paths and not globlib.has_magic(spec.path)
        name = spec.name if spec.name and (single or spec.paths) else dns_label(first)
        container_path = spec.container_path if spec.container_path and single else None
        nodes: list[DeviceNodeEdit] = []
        mounts: list[MountEdit] = []
        for host_path in host_paths:
            real = self.root.real(host_path)
            inside = container_path or host_path
            if spec.type == "device":
                nodes.append(
                    DeviceNodeEdit(path=inside, host_path=real, permissions=spec.permissions)
                )
            else:
                mounts.append(
                    MountEdit(host_path=real, container_path=inside, read_only=spec.read_only)
                )
        edits = ContainerEdits(device_nodes=tuple(nodes), mounts=tuple(mounts), env=spec.env)
        attributes = {
            ATTR_FAMILY: Attribute(string=FAMILY),
            "type": Attribute(string=spec.type),
            **self._pci_attributes(first),
        }
        # A group is selected by its first configured entry (`/dev/vfio/*`), which stays
        # the same whichever nodes match today.
        selector_path = spec.paths[0] if spec.paths else first
        if len(selector_path) <= 64:
            attributes[ATTR_PATH] = Attribute(string=selector_path)
        # Numbers are compared for a node that stays: not for whatever a glob matched first.
        stays = not globlib.has_magic(spec.paths[0]) if spec.paths else True
        params = {"path": first, "type": spec.type, **(self._rdev(spec, first) if stays else {})}
        if spec.paths:
            params[GROUP_PATHS] = "\n".join(spec.paths)
        return Device(
            name=name,
            family=FAMILY,
            attributes=attributes,
            shareable=spec.is_shared,
            edits=edits,
            params=params,
            consumable=(
                {SLOTS: ConsumableCapacity(value=spec.slots)} if spec.slots is not None else {}
            ),
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
        for member in device.params.get(GROUP_PATHS, path).split("\n"):
            # A glob member is there while anything matches: /dev/vfio/<group> nodes come
            # and go as functions move to vfio-pci, the directory's device stays healthy.
            if not self._matches(member, []):
                return Health(problem=f"{member} is gone")
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


def _missing(path: str, not_offered: list[NotOffered], needed_by: str = "") -> None:
    """Record a configured path that matches nothing on this host."""
    if any(n.candidate == path for n in not_offered):
        return  # already said why (outside the root)
    what = "matches nothing" if globlib.has_magic(path) else "does not exist"
    reason = f"the configured path {path} {what} on this host{needed_by}"
    not_offered.append(_not_offered(path, "device-node-missing", reason))
