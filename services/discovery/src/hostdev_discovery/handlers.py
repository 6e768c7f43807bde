"""One async function per subject: the inventory on request."""

from __future__ import annotations

from hostdev_discovery.inventory import InventoryStore
from hostdev_events.inventory import GetInventory, InventorySnapshot


async def on_get_inventory(msg: GetInventory, store: InventoryStore) -> InventorySnapshot:
    """Every device as last published."""
    return InventorySnapshot(node=store.node, devices=tuple(store.devices))
