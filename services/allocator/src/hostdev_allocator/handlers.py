"""One async function per subject: reserve and release."""

from __future__ import annotations

from dataclasses import dataclass

from hostdev_allocator.ledger import Ledger
from hostdev_events.alloc import Released, ReleaseDevices, Reserved, ReserveDevices


@dataclass(frozen=True, slots=True, kw_only=True)
class Deps:
    """What the handlers use."""

    ledger: Ledger


async def on_reserve(msg: ReserveDevices, deps: Deps) -> Reserved:
    """Hold the devices for the owner, all or nothing; a conflict is a typed error."""
    devices = await deps.ledger.reserve(msg.owner, msg.devices)
    return Reserved(owner=msg.owner, devices=devices)


async def on_release(msg: ReleaseDevices, deps: Deps) -> Released:
    """Drop the owner's holds; releasing nothing is success."""
    devices = await deps.ledger.release(msg.owner, msg.devices)
    return Released(owner=msg.owner, devices=devices)
