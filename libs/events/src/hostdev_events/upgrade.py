"""Reading checkpoints of earlier versions: each old form and its translation to the current one.

Version 1 (no `version` key) kept plans as `undo`: one untagged record per device with the
family's state in `data: dict[str, str]` under hand-made keys (`driver/<address>`,
comma-joined `members`, `want.mac`). Version 2 keeps typed, tagged `plans`. A v1 record
is translated when it is decoded (Checkpoint.__post_init__) and written back as v2 the next
time its step changes; nothing else in the code sees the old form.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from hostdev_events.inventory import Attribute, ContainerEdits
from hostdev_events.plans import (
    AnyPlan,
    FunctionDriver,
    HostPathPlan,
    MdevPlan,
    ObservedPlan,
    PciPlan,
    SriovPlan,
    UsbPlan,
    VfValues,
)


class PlanV1(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A version-1 plan (then called HostUndo), as stored; read, never written."""

    device: str
    family: str
    data: dict[str, str] = {}
    edits: ContainerEdits = ContainerEdits()
    attributes: dict[str, Attribute] = {}
    final_edits: bool = True
    observe_only: bool = False


def plan_from_v1(old: PlanV1) -> AnyPlan:
    """The current plan for a version-1 record; ValueError for a family v1 never had."""
    common = {"device": old.device, "edits": old.edits, "attributes": old.attributes}
    data = old.data
    if old.observe_only:
        return ObservedPlan(of=old.family, **common)  # type: ignore[arg-type]
    match old.family:
        case "hostpath":
            return HostPathPlan(final_edits=old.final_edits, **common)  # type: ignore[arg-type]
        case "usb":
            return UsbPlan(
                port=data.get("port", ""),
                busnum=int(data.get("busnum", "0")),
                devnum=int(data.get("devnum", "0")),
                node=data.get("node", ""),
                **common,  # type: ignore[arg-type]
            )
        case "pci":
            return PciPlan(group=int(data["group"]), members=_members(data), **common)  # type: ignore[arg-type]
        case "sriov":
            address = data["address"]
            return SriovPlan(
                mode=data["mode"],
                address=address,
                pf=data.get("pf", ""),
                pf_ifname=data.get("pf_ifname", ""),
                vf_index=int(data.get("vf_index", "0")),
                group=int(data["group"]) if data.get("group") else None,
                members=_members(data) if "members" in data else (_driver(data, address),),
                interface=data.get("interface", ""),
                want=_settings("want", data),
                was=_settings("was", data),
                read_mac=data.get("read.mac", ""),
                final_edits=old.final_edits,
                **common,  # type: ignore[arg-type]
            )
        case "mdev":
            return MdevPlan(
                parent=data["parent"],
                type=data["type"],
                uuid=data["uuid"],
                group=int(data["group"]) if data.get("group") else None,
                final_edits=old.final_edits,
                **common,  # type: ignore[arg-type]
            )
        case _:
            raise ValueError(f"version-1 plan of unknown family {old.family!r}")


def _driver(data: Mapping[str, str], address: str) -> FunctionDriver:
    return FunctionDriver(
        address=address,
        driver=data.get(f"driver/{address}", ""),
        override=data.get(f"override/{address}", ""),
    )


def _members(data: Mapping[str, str]) -> tuple[FunctionDriver, ...]:
    return tuple(_driver(data, a) for a in data.get("members", "").split(",") if a)


def _settings(prefix: str, data: Mapping[str, str]) -> VfValues:
    vlan, trust = data.get(f"{prefix}.vlan"), data.get(f"{prefix}.trust")
    return VfValues(
        mac=data.get(f"{prefix}.mac"),
        vlan=None if vlan is None else int(vlan),
        trust=None if trust is None else trust == "true",
    )
