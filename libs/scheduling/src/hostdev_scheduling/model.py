"""The simulator's input and output types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Object = Mapping[str, Any]


@dataclass(frozen=True)
class Claim:
    """A ResourceClaim to allocate, after pod and template resolution.

    `source` says where it came from ("ResourceClaim ns/name", "Pod ns/p entry e (template t)").
    A claim whose `status.allocation` is set is held as it is, never re-allocated.
    """

    namespace: str
    name: str
    spec: Object
    source: str
    allocation: Object | None = None


@dataclass(frozen=True)
class SimulationInput:
    """Everything one simulation reads: claims in allocation order, classes, slices, nodes."""

    claims: tuple[Claim, ...]
    device_classes: Mapping[str, Object]
    slices: tuple[Object, ...]
    # Node objects by name: their labels decide `nodeSelector` slices; a node given to
    # simulate() without an object here has the single label kubernetes.io/hostname=<name>.
    nodes: Mapping[str, Object] = field(default_factory=dict)
    # Namespace objects by name: adminAccess needs the namespace labelled as upstream requires.
    namespaces: Mapping[str, Object] = field(default_factory=dict)


@dataclass(frozen=True)
class AllocatedDevice:
    """One device in a claim's allocation, as in `status.allocation.devices.results`."""

    request: str  # the request name, or "<request>/<subrequest>" for firstAvailable
    driver: str
    pool: str
    device: str
    admin_access: bool = False
    # For devices with allowMultipleAllocations: the capacity this claim consumes, as quantities.
    consumed_capacity: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClaimOutcome:
    """The devices a claim gets, or why it cannot be satisfied (then `devices` is empty)."""

    namespace: str
    name: str
    devices: list[AllocatedDevice]
    error: str | None
    # True when the claim came with status.allocation: its devices are reported, not allocated.
    already_allocated: bool = False
