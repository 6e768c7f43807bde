"""The node's inventory as the preparer sees it: KV reads, cached until discovery says otherwise."""

from __future__ import annotations

import msgspec

from hostdev_bus import KvStore
from hostdev_events import subjects
from hostdev_events.copies import copied_device
from hostdev_events.inventory import Device, InventoryChanged


class InventoryView:
    """Devices by name; an `inventory.changed` event evicts what it names.

    A read that raced with an eviction is not cached, so a stale device never
    outlives the event that replaced it.
    """

    def __init__(self, node: str, kv: KvStore[Device]) -> None:
        self.node = node
        self.kv = kv
        self._cache: dict[str, Device] = {}
        self._generation = 0

    async def device(self, name: str) -> Device | None:
        """The device, or None when discovery does not know it.

        A numbered copy of a shared device (`kvm-3`, published when the API server drops
        `allowMultipleAllocations`) is that shared device under the copy's name: the
        claim's spec, hold and answer then carry the name the scheduler allocated.
        """
        found = await self._read(name)
        if found is not None:
            return found
        base = copied_device(name)
        if base is None:
            return None
        shared = await self._read(base)
        if shared is None or not shared.shareable:
            return None
        return msgspec.structs.replace(shared, name=name)

    async def _read(self, name: str) -> Device | None:
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        generation = self._generation
        found = await self.kv.get(subjects.device_key(self.node, name))
        if found is None:
            return None
        if generation == self._generation:
            self._cache[name] = found[0]
        return found[0]

    async def on_changed(self, event: InventoryChanged) -> None:
        """Forget the devices the event names."""
        self._generation += 1
        for name in (*event.changed, *event.removed):
            self._cache.pop(name, None)
