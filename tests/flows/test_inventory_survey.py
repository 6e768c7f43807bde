"""The inventory says what discovery leaves out and why (`inventory.get`)."""

from __future__ import annotations

import nats

from hostdev_bus import NatsBus
from hostdev_events import subjects
from hostdev_events.inventory import GetInventory, InventorySnapshot
from hostdev_testing.fakehost import FakeHost
from hostdev_testing.services import NodeConfig, Services


async def _inventory(node_config: NodeConfig) -> InventorySnapshot:
    nc = await nats.connect(node_config.nats_url)
    try:
        return await NatsBus(nc).request(
            subjects.inventory_get(node_config.node), GetInventory(), InventorySnapshot, 5
        )
    finally:
        await nc.close()


async def test_inventory_reply_lists_a_configured_path_that_is_missing(
    services: Services, node_config: NodeConfig, fake_host: FakeHost
) -> None:
    """A configured path absent from the host is in the reply's not_offered with its code
    and reason; the devices that exist are offered."""
    fake_host.write_config(
        node_config.devices_config,
        [{"path": "/dev/kvm", "name": "kvm", "shared": True}, {"path": "/dev/sgx_enclave"}],
    )
    await services.start("discovery")
    snapshot = await _inventory(node_config)
    assert [d.name for d in snapshot.devices] == ["kvm"]
    (missing,) = snapshot.not_offered
    assert (missing.family, missing.candidate, missing.code) == (
        "hostpath",
        "/dev/sgx_enclave",
        "device-node-missing",
    )
    assert "/dev/sgx_enclave" in missing.reason
