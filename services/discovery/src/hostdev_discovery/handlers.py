"""One async function per subject: the inventory on request."""

from __future__ import annotations

from hostdev_discovery.inventory import InventoryStore
from hostdev_discovery.not_offered import NotOfferedLog
from hostdev_events.inventory import GetInventory, InventorySnapshot


async def on_get_inventory(
    msg: GetInventory, store: InventoryStore, not_offered: NotOfferedLog
) -> InventorySnapshot:
    """Every device as last published, and what the last scan left out and why."""
    return InventorySnapshot(
        node=store.node, devices=tuple(store.devices), not_offered=not_offered.current
    )
