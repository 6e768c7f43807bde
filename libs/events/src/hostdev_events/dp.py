"""Device-plugin allocations between the gateway and the preparer.

The kubelet's device plugin API never says when a device is free again; the gateway
learns it from the kubelet's pod-resources API and releases what no pod uses.
"""

from __future__ import annotations

import re

import msgspec

from hostdev_events.base import Message
from hostdev_events.inventory import Attribute, ContainerEdits

_NOT_KEY = re.compile(r"[^-a-zA-Z0-9]+")
OWNER_PREFIX = "dp_"  # every device-plugin owner starts so; claim UIDs never do


class DpAllocation(msgspec.Struct, frozen=True, kw_only=True):
    """One device-plugin device ID and the inventory device behind it."""

    id: str
    device: str


class AllocateDevices(Message, frozen=True, tag="dp.allocate.v1"):
    """Prepare devices for a container that asked for `resource` through resources.limits."""

    resource: str
    allocations: tuple[DpAllocation, ...]
    timeout_ms: int


class DpPrepared(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the container gets for one device-plugin ID."""

    id: str
    device: str
    family: str
    cdi_device_ids: tuple[str, ...] = ()
    edits: ContainerEdits = ContainerEdits()
    attributes: dict[str, Attribute] = {}


class DevicesAllocated(Message, frozen=True, tag="dp.allocated.v1"):
    """Every requested ID, prepared."""

    resource: str
    prepared: tuple[DpPrepared, ...]


class ReleaseAllocations(Message, frozen=True, tag="dp.release.v1"):
    """Undo the allocations of these IDs: no pod uses them any more."""

    resource: str
    ids: tuple[str, ...]
    timeout_ms: int


class AllocationsReleased(Message, frozen=True, tag="dp.released.v1"):
    """ID to error text; empty means released."""

    errors: dict[str, str]


class ListAllocations(Message, frozen=True, tag="dp.list.v1"):
    """Which IDs of `resource` are prepared on the node."""

    resource: str


class Allocations(Message, frozen=True, tag="dp.allocations.v1"):
    """The prepared IDs of a resource."""

    resource: str
    ids: tuple[str, ...]


class RestoreAllocations(Message, frozen=True, tag="dp.restore.v1"):
    """Bring back the CDI specs and host state of IDs pods still hold.

    The kubelet calls Allocate once per container and never again for running pods; a
    reboot empties the CDI directory and resets vfio bindings, mdevs and VF settings.
    IDs whose state is still in place (same boot) are left alone.
    """

    resource: str
    allocations: tuple[DpAllocation, ...]
    timeout_ms: int


class AllocationsRestored(Message, frozen=True, tag="dp.restored.v1"):
    """`restored`: IDs whose state was rebuilt; `errors`: ID to error text for those that
    could not be. Every other ID asked about was already in place."""

    restored: tuple[str, ...]
    errors: dict[str, str]


class ReconcileAllocations(Message, frozen=True, tag="dp.reconcile.v1"):
    """Compare prepared device-plugin IDs with the kubelet's pod-resources now."""


class Reconciled(Message, frozen=True, tag="dp.reconciled.v1"):
    """IDs released per resource by this pass."""

    released: dict[str, tuple[str, ...]]


def owner(resource: str, device_id: str) -> str:
    """The ledger and checkpoint owner of one device-plugin ID (a KV- and file-safe name)."""
    return f"{owner_prefix(resource)}{_NOT_KEY.sub('-', device_id)}"


def owner_prefix(resource: str) -> str:
    """What every owner of `resource` starts with."""
    return f"{OWNER_PREFIX}{_NOT_KEY.sub('-', resource)}_"
