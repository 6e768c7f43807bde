"""The one interface every device family implements, and helpers they share."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import msgspec

from hostdev_events.inventory import Device, NotOffered
from hostdev_events.plans import AnyPlan, Plan
from hostdev_families.errors import FamilyError

ATTR_FAMILY = "family"
ATTR_PATH = "path"
STD_PCI_BUS_ID = "resource.kubernetes.io/pciBusID"
STD_PCIE_ROOT = "resource.kubernetes.io/pcieRoot"
# Params under this prefix record what discovery saw (a node's major:minor, a function's host
# driver). Discovery keeps the first value of each while it tracks the device, so `healthy`
# compares the host with what was there, not with what the latest scan found.
DISCOVERED = "discovered."

_NOT_LABEL = re.compile(r"[^a-z0-9]+")


# The problem text of a health check the host did not answer (an unreadable sysfs file).
CHECK_FAILED = "health check failed"


@dataclass(frozen=True, slots=True)
class Health:
    """What one health check found.

    problem:  why the device cannot be used now, for operators; empty when nothing is wrong.
    counters: error counters that only grow (AER), by an operator-readable label. Discovery
              marks the device unhealthy when one rises between two checks, so errors
              counted before it started are not held against the device.
    """

    problem: str = ""
    counters: Mapping[str, int] = field(default_factory=dict)


NOT_SELECTED = "not-selected"


class Survey(msgspec.Struct, kw_only=True):
    """What a family found on the host: the devices it offers, and every other candidate
    with the reason it is not offered (`not-selected` when no selector matches it)."""

    offered: list[Device] = msgspec.field(default_factory=list)
    not_offered: list[NotOffered] = msgspec.field(default_factory=list)


class Family(Protocol):
    """Discover, prepare, unprepare and check one kind of device, all under one root.

    Methods are synchronous filesystem work; services call them through
    asyncio.to_thread. `plan` only reads; `apply` and `unprepare` are idempotent,
    and `apply` undoes what it did before raising.
    """

    name: str
    # Whether plan/apply/unprepare touch the filesystem; callers hand blocking families
    # to a thread and call the others inline (a thread hop costs more than their work).
    blocking: bool

    def discover(self) -> list[Device]:
        """Every device of this family on the node, with stable names: `survey().offered`."""
        ...

    def survey(self) -> Survey:
        """The devices offered and every candidate not offered, with its reason."""
        ...

    def plan(self, device: Device, claim_uid: str, config: Mapping[str, Any]) -> AnyPlan:
        """Decide the host actions for a device and record how to undo them; no writes.

        `config` is the claim's opaque parameters for this driver and request; a value
        the family cannot use raises FamilyError.
        """
        ...

    def apply(self, plan: AnyPlan) -> AnyPlan:
        """Carry out a plan (bind to vfio-pci, create an mdev); returns it with the final
        edits (an mdev's IOMMU group is known only once it exists). Raises HostRefused."""
        ...

    def unprepare(self, plan: AnyPlan) -> None:
        """Undo `apply`; succeeding when there is nothing left to undo."""
        ...

    def healthy(self, device: Device) -> Health:
        """Whether the device is still there and usable, and its error counters; reads only.
        `device.params` under DISCOVERED hold the values to compare the host with."""
        ...


P = TypeVar("P", bound=Plan)


def own_plan(plan: AnyPlan, kind: type[P]) -> P:
    """The plan as this family's own type; another family's plan is refused, never misread."""
    if not isinstance(plan, kind):
        raise FamilyError(plan.device, f"a {plan.family} plan was handed to the {kind.__name__}")
    return plan


CONFIG_API_VERSION = "hostdev.k8s.io/v1alpha1"
_ENVELOPE = frozenset({"apiVersion", "kind"})


def check_config(
    device: str, config: Mapping[str, Any], kind: str | None, keys: frozenset[str] = frozenset()
) -> None:
    """Refuse opaque parameters a family would otherwise ignore: a misspelt key must not
    silently do nothing. `kind` None means the family takes no configuration at all."""
    version = config.get("apiVersion", CONFIG_API_VERSION)
    if version != CONFIG_API_VERSION:
        raise FamilyError(device, f"config apiVersion {version!r} is not {CONFIG_API_VERSION}")
    unknown = sorted(set(config) - _ENVELOPE - keys)
    if kind is None and unknown:
        raise FamilyError(device, f"this device takes no configuration (got {', '.join(unknown)})")
    if kind is not None and config.get("kind", kind) != kind:
        raise FamilyError(device, f"config kind {config.get('kind')!r} is not {kind}")
    if unknown:
        raise FamilyError(device, f"unknown config keys for {kind}: {', '.join(unknown)}")


def dns_label(text: str) -> str:
    """A stable DNS label (<= 63 chars, [a-z0-9-]) for a path, address or serial."""
    label = _NOT_LABEL.sub("-", text.lower()).strip("-") or "device"
    if len(label) <= 63:
        return label
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{label[:54].rstrip('-')}-{digest}"
