"""Reservation commands between the preparer and the allocator."""

from __future__ import annotations

import msgspec

from hostdev_events.base import Message
from hostdev_events.inventory import CounterUse


class DeviceWant(msgspec.Struct, frozen=True, kw_only=True):
    """One device an owner wants, whether others may hold it too, and what it consumes."""

    device: str
    shareable: bool = False
    consumes: tuple[CounterUse, ...] = ()
    also_holds: tuple[str, ...] = ()  # exclusive entries taken with it (its IOMMU group)
    # KEP-5075: the device's consumable capacities (totals) and what this want takes of
    # them; `share_id` tells two shares of one device held by one owner apart.
    capacity: dict[str, int] = {}
    consumed: dict[str, int] = {}
    share_id: str | None = None


class ReserveDevices(Message, frozen=True, tag="alloc.reserve.v1"):
    """Hold every listed device for `owner`, all or nothing.

    `owner` is a claim UID for DRA, or `dp/<resource>/<id>` for the device plugin path.
    Reserving again what the owner already holds succeeds.
    """

    owner: str
    devices: tuple[DeviceWant, ...]


class Reserved(Message, frozen=True, tag="alloc.reserved.v1"):
    """The owner now holds these devices."""

    owner: str
    devices: tuple[str, ...]


class ReleaseDevices(Message, frozen=True, tag="alloc.release.v1"):
    """Drop everything `owner` holds (or only the listed ledger entries, when given)."""

    owner: str
    devices: tuple[str, ...] | None = None


class Released(Message, frozen=True, tag="alloc.released.v1"):
    """The devices the owner no longer holds."""

    owner: str
    devices: tuple[str, ...]


class Hold(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Ledger entry of a device, an IOMMU group or a counter set (KV value `hold.v1`).

    Devices and groups list their holders; a counter set also records what each
    holder consumes, so the sum can be checked against the capacity.
    """

    version: int = 1
    holders: tuple[str, ...] = ()
    shareable: bool = False
    # owner -> counter -> amount; for a device with consumable capacity the key is the
    # owner, or `<owner>#<shareID>` for each share of it, and the counters its capacities.
    used: dict[str, dict[str, int]] = {}


COUNTER_ENTRY_PREFIX = "counters-"
GROUP_ENTRY_PREFIX = "iommu-group-"


def group_entry(group: int) -> str:
    """The ledger entry that keeps one IOMMU group with one owner."""
    return f"{GROUP_ENTRY_PREFIX}{group}"


def is_device_entry(entry: str) -> bool:
    """Whether a ledger entry names a device (not a group or a counter set)."""
    return not entry.startswith((GROUP_ENTRY_PREFIX, COUNTER_ENTRY_PREFIX))


def counter_entry(counter_set: str) -> str:
    """The ledger entry of a shared counter set."""
    return COUNTER_ENTRY_PREFIX + counter_set


def share_key(owner: str, share_id: str | None) -> str:
    """The `Hold.used` key of one share of a device."""
    return f"{owner}#{share_id}" if share_id else owner


def owns_key(owner: str, key: str) -> bool:
    """Whether a `Hold.used` key belongs to `owner` (itself or one of its shares)."""
    return key == owner or key.startswith(owner + "#")


def ledger_entries(wants: tuple[DeviceWant, ...]) -> tuple[str, ...]:
    """Every ledger entry reserving `wants` touches: devices, groups, counter sets."""
    entries = {w.device for w in wants}
    entries.update(e for w in wants for e in w.also_holds)
    entries.update(counter_entry(u.counter_set) for w in wants for u in w.consumes)
    return tuple(sorted(entries))


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """A device-plugin ID the kubelet may choose, with where its device sits."""

    id: str
    device: str
    numa: int | None = None
    pcie_root: str = ""


class PreferDevices(Message, frozen=True, tag="alloc.prefer.v1"):
    """Which `size` IDs to give one container (GetPreferredAllocation)."""

    candidates: tuple[Candidate, ...]
    must_include: tuple[str, ...] = ()
    size: int = 1


class Preferred(Message, frozen=True, tag="alloc.preferred.v1"):
    """The chosen IDs, must-include first."""

    ids: tuple[str, ...]
