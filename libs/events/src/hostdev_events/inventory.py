"""The node's device inventory as discovery publishes it (KV values and events)."""

from __future__ import annotations

import msgspec

from hostdev_events.base import Message


class Attribute(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A ResourceSlice device attribute: exactly one of the four fields is set."""

    string: str | None = None
    int_: int | None = msgspec.field(default=None, name="int")
    bool_: bool | None = msgspec.field(default=None, name="bool")
    version: str | None = None


class DeviceNodeEdit(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A device node handed to the container."""

    path: str  # inside the container
    host_path: str  # on the host, with the configured root applied
    permissions: str = "rw"


class MountEdit(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A host path bind-mounted into the container."""

    host_path: str
    container_path: str
    read_only: bool = False


class NetDeviceEdit(msgspec.Struct, frozen=True, kw_only=True):
    """A host network interface moved into the container's network namespace."""

    host_interface_name: str
    name: str  # the interface name inside the container


class ContainerEdits(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a prepared device adds to a container (becomes CDI containerEdits)."""

    device_nodes: tuple[DeviceNodeEdit, ...] = ()
    mounts: tuple[MountEdit, ...] = ()
    env: tuple[str, ...] = ()
    net_devices: tuple[NetDeviceEdit, ...] = ()


class CounterUse(msgspec.Struct, frozen=True, kw_only=True):
    """How much of a shared counter a device uses while allocated, and the counter's total.

    Carrying the total with every use keeps each device self-describing: the slice
    publisher derives the counter sets from the devices, the allocator checks the sum.
    """

    counter_set: str  # a DNS label, unique in the pool (for mdev: one per parent GPU)
    counter: str
    value: int
    capacity: int


class ConsumableCapacity(msgspec.Struct, frozen=True, kw_only=True):
    """A capacity many claims of a shared device consume from (KEP-5075), as whole units.

    Published with a request policy: a claim takes `default` unless it asks for more,
    up to `value`; the scheduler records each claim's amount in the allocation result
    (`consumedCapacity`) and the allocator checks the sum against `value`.
    """

    value: int
    default: int = 1


class Device(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One device of the node's inventory (KV value `device.v1`, key node.device).

    `name` is stable across restarts (derived from a path, PCI address or serial),
    a DNS label so it can be a ResourceSlice device name. `params` carries the
    family's own identity data (for example a PCI address) for prepare.
    """

    version: int = 1
    name: str
    family: str
    attributes: dict[str, Attribute] = {}
    capacity: dict[str, str] = {}
    shareable: bool = False
    healthy: bool = True
    health_message: str = ""  # why it is unhealthy, for operators and the kubelet
    edits: ContainerEdits = ContainerEdits()
    params: dict[str, str] = {}
    consumes: tuple[CounterUse, ...] = ()
    # Ledger entries held together with this device: every function of its IOMMU group,
    # so two claims can never split one group between them.
    also_holds: tuple[str, ...] = ()
    # W3C traceparent of the discovery pass that last wrote this record (and published the
    # slices with it); a claim's prepare links to it. Empty when tracing is off.
    published_in: str = ""
    # Consumable capacities of a shared device, by name (`slots`): how many may hold it.
    consumable: dict[str, ConsumableCapacity] = {}


class NotOffered(msgspec.Struct, frozen=True, kw_only=True):
    """A candidate a family saw on the host and does not offer, with the reason why.

    `candidate` names it the way the host does (a PCI address, a USB port, a host path,
    an mdev parent and type); `code` is short, stable and kebab-case (`iommu-group-shared`,
    `not-selected`, ...) for tools; `reason` is one sentence for operators.
    """

    family: str
    candidate: str
    reason: str
    code: str


class InventoryChanged(Message, frozen=True, tag="inventory.changed.v1"):
    """Devices of the node were added, changed or removed since the last event."""

    node: str
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


class GetInventory(Message, frozen=True, tag="inventory.get.v1"):
    """Ask for the node's current inventory."""


class InventorySnapshot(Message, frozen=True, tag="inventory.snapshot.v1"):
    """Every device discovery currently knows on the node."""

    node: str
    devices: tuple[Device, ...]
    # Candidates the last scan left out and why (defaulted: older readers still decode).
    not_offered: tuple[NotOffered, ...] = ()


class HealthChange(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A device whose health changed, after debouncing."""

    device: str
    healthy: bool
    message: str = ""


class HealthChanged(Message, frozen=True, tag="health.changed.v1"):
    """Devices of the node became healthy or unhealthy."""

    node: str
    changes: tuple[HealthChange, ...]
