"""`hostdev inventory`: what this driver offers on a host, with health, and what it does not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from hostdev_cli.host import SURVEY_ALL, Host
from hostdev_cli.output import table
from hostdev_cli.reasons import host_reasons, iommu_groups
from hostdev_events.inventory import Attribute, Device, NotOffered
from hostdev_families import check_health, survey_all


@dataclass(frozen=True, slots=True)
class Inventory:
    """One read-only scan: the devices (health checked once) and the candidates passed over."""

    root: str
    config: str
    iommu_groups: int
    devices: list[Device]
    not_offered: list[NotOffered]


def scan(host: Host) -> Inventory:
    """Survey with the service's families, check each device's health once."""
    survey = survey_all(host.families)
    devices = []
    for device in survey.offered:
        health = check_health(host.families, device)
        devices.append(
            msgspec.structs.replace(
                device, healthy=not health.problem, health_message=health.problem
            )
        )
    return Inventory(
        root=str(host.root.root),
        config=host.config_source,
        iommu_groups=iommu_groups(host.root),
        devices=devices,
        not_offered=[n for n in survey.not_offered if _worth_saying(host, n)]
        + host_reasons(host.root, host.config),
    )


# With the built-in selection every function "matches" the SR-IOV selector; a function
# without SR-IOV is then simply no SR-IOV candidate, not something the operator chose.
_NOISE_OF_SURVEY_ALL = frozenset({"not-sriov-capable"})


def _worth_saying(host: Host, entry: NotOffered) -> bool:
    return host.config is not SURVEY_ALL or entry.code not in _NOISE_OF_SURVEY_ALL


def to_data(inventory: Inventory) -> dict[str, Any]:
    """The scan as plain data; `devices` are inventory Devices, readable by `simulate`."""
    return {
        "root": inventory.root,
        "config": inventory.config,
        "iommuGroups": inventory.iommu_groups,
        "devices": [msgspec.to_builtins(d) for d in inventory.devices],
        "notOffered": [
            {"family": n.family, "candidate": n.candidate, "reason": n.reason, "code": n.code}
            for n in inventory.not_offered
        ],
    }


def _value(attribute: Attribute) -> str:
    for value in (attribute.string, attribute.int_, attribute.bool_, attribute.version):
        if value is not None:
            return str(value).lower() if isinstance(value, bool) else str(value)
    return ""


def _attributes(device: Device) -> str:
    # `family` is already a column; the standard domain is long and adds nothing here.
    shown = {k.rsplit("/", 1)[-1]: v for k, v in device.attributes.items() if k != "family"}
    return " ".join(f"{k}={_value(v)}" for k, v in sorted(shown.items()))


def render(inventory: Inventory) -> str:
    """Tables for people: the devices, then the candidates passed over."""
    iommu = (
        f"on ({inventory.iommu_groups} groups)"
        if inventory.iommu_groups
        else "off (no IOMMU groups)"
    )
    lines = [
        f"root: {inventory.root}",
        f"selection: {inventory.config}",
        f"IOMMU: {iommu}",
        "",
        f"Offered ({len(inventory.devices)}):",
    ]
    rows = [
        (
            d.name,
            d.family,
            "shared" if d.shareable else "exclusive",
            "ok" if d.healthy else f"unhealthy: {d.health_message}",
            _attributes(d),
        )
        for d in inventory.devices
    ]
    lines.append(table(("DEVICE", "FAMILY", "USE", "HEALTH", "ATTRIBUTES"), rows))
    lines += ["", f"Not offered ({len(inventory.not_offered)}):"]
    lines.append(
        table(
            ("CANDIDATE", "FAMILY", "REASON"),
            [(n.candidate, n.family, n.reason) for n in inventory.not_offered],
        )
    )
    return "\n".join(lines)
