"""Reservation commands between the preparer and the allocator."""

from __future__ import annotations

import msgspec

from hostdev_events.base import Message


class DeviceWant(msgspec.Struct, frozen=True, kw_only=True):
    """One device an owner wants, and whether others may hold it at the same time."""

    device: str
    shareable: bool = False


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
    """Drop everything `owner` holds (or only `devices`, when given)."""

    owner: str
    devices: tuple[str, ...] | None = None


class Released(Message, frozen=True, tag="alloc.released.v1"):
    """The devices the owner no longer holds."""

    owner: str
    devices: tuple[str, ...]


class Hold(msgspec.Struct, frozen=True, kw_only=True):
    """Ledger entry of one device: who holds it (KV value, `hold.v1`)."""

    version: int = 1
    holders: tuple[str, ...] = ()
    shareable: bool = False
