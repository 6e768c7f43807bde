"""The node's inventory and ledger as the device plugin side sees them, kept current from KV."""

from __future__ import annotations

import asyncio
import logging

from hostdev_bus import NatsKv
from hostdev_events import subjects
from hostdev_events.alloc import Hold
from hostdev_events.inventory import Device

logger = logging.getLogger(__name__)


class Feed:
    """Devices and holds of one node; `changed()` wakes every waiter on any update."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.devices: dict[str, Device] = {}
        self.holds: dict[str, Hold] = {}
        self.version = 0
        self.ready = asyncio.Event()
        self._changed = asyncio.Condition()

    async def _bump(self) -> None:
        async with self._changed:
            self.version += 1
            self._changed.notify_all()

    async def touch(self) -> None:
        """Wake every waiter: something derived from the feed (not in it) changed."""
        await self._bump()

    async def wait_newer(self, version: int) -> int:
        """Wait until the feed is newer than `version`; returns the new version."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.version > version)
            return self.version

    async def follow_inventory(self, kv: NatsKv[Device]) -> None:
        """Mirror the node's inventory keys until cancelled."""
        prefix = subjects.device_key_prefix(self.node)
        async for item in kv.watch(prefix):
            if item is None:
                self.ready.set()
            else:
                key, device = item
                name = key[len(prefix) :]
                if device is None:
                    self.devices.pop(name, None)
                else:
                    self.devices[name] = device
            await self._bump()

    async def follow_ledger(self, kv: NatsKv[Hold]) -> None:
        """Mirror the node's ledger entries until cancelled."""
        prefix = subjects.device_key_prefix(self.node)
        async for item in kv.watch(prefix):
            if item is None:
                continue
            key, hold = item
            entry = key[len(prefix) :]
            if hold is None:
                self.holds.pop(entry, None)
            else:
                self.holds[entry] = hold
            await self._bump()
