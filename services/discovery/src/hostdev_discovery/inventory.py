"""The node's inventory in JetStream KV, one key per device, written only when it changed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import Any

import msgspec

from hostdev_bus import Bus, KvStore, KvWrite, tracing, write_all
from hostdev_events import subjects
from hostdev_events.inventory import Device, InventoryChanged

logger = logging.getLogger(__name__)

# Writes in flight at once: one at a time, 10,000 devices take seconds; all at once would
# flood the connection's pending buffer.
CONCURRENT_WRITES = 64


def _same(known: tuple[Device, int] | None, scanned: Device) -> bool:
    """Whether a scanned device equals its record, apart from the pass that wrote it."""
    if known is None:
        return False
    record = known[0]
    if record.published_in:
        record = msgspec.structs.replace(record, published_in="")
    return record == scanned


def _stamped(device: Device, stamp: str) -> Device:
    return msgspec.structs.replace(device, published_in=stamp) if stamp else device


async def bounded(
    work: Sequence[Coroutine[Any, Any, None]], limit: int = CONCURRENT_WRITES
) -> None:
    """Run the coroutines with at most `limit` in flight; the first error is raised."""
    gate = asyncio.Semaphore(limit)

    async def one(item: Coroutine[Any, Any, None]) -> None:
        async with gate:
            await item

    await asyncio.gather(*(one(w) for w in work))


class InventoryStore:
    """Discovery's view of what KV holds for its node; the single writer of those keys."""

    def __init__(self, node: str, kv: KvStore[Device], bus: Bus) -> None:
        self.node = node
        self.kv = kv
        self.bus = bus
        self._known: dict[str, tuple[Device, int]] = {}

    async def load(self) -> None:
        """Read what a previous run left, so an unchanged device is not written again."""
        prefix = subjects.device_key_prefix(self.node)
        for key in await self.kv.keys(prefix):
            found = await self.kv.get(key)
            if found is not None:
                self._known[key[len(prefix) :]] = found

    @property
    def devices(self) -> list[Device]:
        """The devices as last published, by name."""
        return [self._known[name][0] for name in sorted(self._known)]

    async def publish(self, devices: Sequence[Device]) -> InventoryChanged | None:
        """Write changed devices, delete gone ones, announce the change; None if nothing changed."""
        wanted = {d.name: d for d in devices}
        changed = [n for n, d in wanted.items() if not _same(self._known.get(n), d)]
        removed = [n for n in self._known if n not in wanted]
        stamp = tracing.traceparent()  # this pass's span, recorded in what it writes
        await self._write([(n, _stamped(wanted[n], stamp)) for n in changed])
        await bounded([self._remove(n) for n in removed])
        if not changed and not removed:
            return None
        event = InventoryChanged(node=self.node, changed=tuple(changed), removed=tuple(removed))
        await self.bus.publish(subjects.inventory_changed(self.node), event)
        logger.info("inventory changed", extra={"changed": changed, "removed": removed})
        return event

    async def _remove(self, name: str) -> None:
        await self.kv.delete(subjects.device_key(self.node, name))
        del self._known[name]

    async def _write(self, devices: Sequence[tuple[str, Device]]) -> None:
        """Write every device (pipelined, each confirmed by the server before this returns);
        a key someone else wrote meanwhile is settled on its own."""
        writes = [
            KvWrite(
                subjects.device_key(self.node, name), device, self._known.get(name, (None, 0))[1]
            )
            for name, device in devices
        ]
        results = await write_all(self.kv, writes)
        lost = []
        for (name, device), result in zip(devices, results, strict=True):
            if isinstance(result, int):
                self._known[name] = (device, result)
            else:
                lost.append(self._overwrite(name, device))
        await bounded(lost)

    async def _overwrite(self, name: str, device: Device) -> None:
        # Someone else wrote our key (a second instance during a rolling update): take its
        # revision and write ours on top, since this instance just scanned the host.
        key = subjects.device_key(self.node, name)
        found = await self.kv.get(key)
        if found is None:
            revision = await self.kv.create(key, device)
        else:
            revision = await self.kv.update(key, device, last=found[1])
        self._known[name] = (device, revision)
