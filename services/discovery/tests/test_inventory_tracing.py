"""Inventory records remember the discovery pass that wrote them, without being rewritten
for it: a device unchanged in a later pass keeps its record, and its stamp."""

from __future__ import annotations

import uuid

import msgspec
from nats.aio.client import Client
from opentelemetry.sdk.trace import TracerProvider

from hostdev_bus import NatsBus, NatsKv
from hostdev_discovery.inventory import InventoryStore
from hostdev_events import subjects
from hostdev_events.inventory import Device

NODE = "trace-node"
# A provider of our own, not the global one: spans record, nothing is exported.
tracer = TracerProvider().get_tracer("test")


async def _store(nc: Client) -> tuple[InventoryStore, NatsKv[Device]]:
    kv = await NatsKv.open(nc.jetstream(), f"inv-{uuid.uuid4().hex[:8]}", Device)
    return InventoryStore(NODE, kv, NatsBus(nc)), kv


async def _record(kv: NatsKv[Device], name: str) -> tuple[Device, int]:
    found = await kv.get(subjects.device_key(NODE, name))
    assert found is not None
    return found


async def test_written_devices_carry_the_pass_and_unchanged_ones_are_not_rewritten(
    nc: Client,
) -> None:
    """The first pass stamps both records with its span; a second pass that finds the same
    devices writes nothing; a third that finds one changed rewrites that one with its own."""
    store, kv = await _store(nc)
    kvm, tun = Device(name="kvm", family="hostpath"), Device(name="tun", family="hostpath")
    with tracer.start_as_current_span("discover devices") as first:
        assert await store.publish([kvm, tun]) is not None
    first_id = f"{first.get_span_context().span_id:016x}"
    kvm_record, kvm_revision = await _record(kv, "kvm")
    assert first_id in kvm_record.published_in
    assert kvm_record.published_in.startswith("00-")

    with tracer.start_as_current_span("discover devices"):
        assert await store.publish([kvm, tun]) is None
    assert await _record(kv, "kvm") == (kvm_record, kvm_revision)

    sick = msgspec.structs.replace(tun, healthy=False, health_message="gone")
    with tracer.start_as_current_span("discover devices") as third:
        changed = await store.publish([kvm, sick])
    assert changed is not None
    assert changed.changed == ("tun",)
    tun_record, _ = await _record(kv, "tun")
    assert f"{third.get_span_context().span_id:016x}" in tun_record.published_in
    assert (await _record(kv, "kvm"))[0].published_in == kvm_record.published_in


async def test_without_tracing_records_have_no_stamp(nc: Client) -> None:
    """With no span being recorded (tracing off) the record is what it always was."""
    store, kv = await _store(nc)
    await store.publish([Device(name="kvm", family="hostpath")])
    record, _ = await _record(kv, "kvm")
    assert record.published_in == ""
    assert b"published_in" not in msgspec.json.encode(record)
