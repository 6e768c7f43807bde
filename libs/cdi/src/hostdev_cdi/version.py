"""The minimum cdiVersion a spec needs: older runtimes reject newer version strings."""

from __future__ import annotations

from hostdev_cdi.spec import ContainerEdits, Spec

KNOWN_VERSIONS = ("0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0")


def _edits_need(edits: ContainerEdits | None) -> str:
    if edits is None:
        return "0.3.0"
    if edits.net_devices:
        return "1.1.0"
    if edits.additional_gids:
        return "0.7.0"
    if any(node.host_path is not None for node in edits.device_nodes):
        return "0.5.0"
    if any(mount.type is not None for mount in edits.mounts):
        return "0.4.0"
    return "0.3.0"


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def minimum_version(spec: Spec) -> str:
    """The newest version whose feature the spec uses; 0.3.0 when none."""
    needed = ["0.3.0", _edits_need(spec.container_edits)]
    if spec.annotations or any(d.annotations for d in spec.devices):
        needed.append("0.6.0")
    if "." in spec.kind.partition("/")[2]:
        needed.append("0.6.0")
    for device in spec.devices:
        needed.append(_edits_need(device.container_edits))
        if device.name[:1].isdigit():
            needed.append("0.5.0")
    return max(needed, key=version_key)
