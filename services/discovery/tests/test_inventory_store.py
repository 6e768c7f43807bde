"""The inventory store writes many devices at once: every write confirmed before the change
is announced, a key someone else wrote overwritten with this scan, a returning device
written again."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from hostdev_bus import NatsBus, NatsKv
from hostdev_discovery.inventory import InventoryStore
from hostdev_events import subjects
from hostdev_events.inventory import Device, InventoryChanged

NODE = "store-node"


async def _store(nc: Client) -> tuple[InventoryStore, NatsKv[Device]]:
    kv = await NatsKv.open(nc.jetstream(), f"inv-{uuid.uuid4().hex[:8]}", Device)
    return InventoryStore(NODE, kv, NatsBus(nc)), kv


def _devices(count: int) -> list[Device]:
    return [Device(name=f"n{i:05d}", family="hostpath") for i in range(count)]


async def test_every_device_is_stored_when_the_change_is_announced(nc: Client) -> None:
    """1,500 devices (several pipelined windows): the moment inventory.changed arrives,
    KV already holds every one of them, at the revision the store remembers."""
    store, kv = await _store(nc)
    held: list[int] = []
    seen = asyncio.Event()

    async def on_changed(msg: Msg) -> None:
        held.append(len(await kv.keys(subjects.device_key_prefix(NODE))))
        seen.set()

    await nc.subscribe(subjects.inventory_changed(NODE), cb=on_changed)
    await nc.flush()
    devices = _devices(1500)
    event = await store.publish(devices)
    await asyncio.wait_for(seen.wait(), 10)
    assert held == [1500]
    assert event is not None
    assert event.changed == tuple(d.name for d in devices)
    assert store.devices == devices
    assert await kv.get(subjects.device_key(NODE, "n00700")) == store._known["n00700"]


async def test_a_key_written_by_someone_else_is_overwritten_with_this_scan(
    nc: Client,
) -> None:
    """Another writer (a second instance in a rolling update) changed a key since this store
    wrote it: the store's next write lands on top, the others go through unhindered."""
    store, kv = await _store(nc)
    devices = _devices(3)
    await store.publish(devices)
    key = subjects.device_key(NODE, "n00001")
    _, revision = await store.kv.get(key) or (None, 0)
    await kv.update(key, Device(name="n00001", family="other"), last=revision)
    scanned = [msgspec.structs.replace(d, healthy=False) for d in devices]
    event = await store.publish(scanned)
    assert event is not None
    assert event.changed == ("n00000", "n00001", "n00002")
    for device in scanned:
        found = await kv.get(subjects.device_key(NODE, device.name))
        assert found is not None
        assert found[0] == device


async def test_a_device_back_after_it_left_is_written_again(nc: Client) -> None:
    """A device removed (its key deleted) and found again is written and announced."""
    store, kv = await _store(nc)
    devices = _devices(3)
    await store.publish(devices)
    left = await store.publish(devices[:2])
    assert left == InventoryChanged(node=NODE, changed=(), removed=("n00002",))
    assert await kv.get(subjects.device_key(NODE, "n00002")) is None
    back = await store.publish(devices)
    assert back == InventoryChanged(node=NODE, changed=("n00002",), removed=())
    assert await kv.get(subjects.device_key(NODE, "n00002")) == store._known["n00002"]
