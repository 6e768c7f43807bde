"""The ledger: exclusive and shared holds, all-or-nothing reservations, compare-and-set."""

from __future__ import annotations

import pytest

from hostdev_allocator.ledger import Ledger
from hostdev_bus import MemoryKv
from hostdev_events.alloc import DeviceWant, Hold
from hostdev_events.base import ErrorCode
from hostdev_runtime.errors import HandlerError


def _ledger() -> Ledger:
    return Ledger("node-1", MemoryKv[Hold]())


async def test_exclusive_device_refuses_a_second_owner() -> None:
    """A device reserved without sharing cannot be reserved by anyone else."""
    ledger = _ledger()
    await ledger.reserve("a", [DeviceWant(device="d1")])
    with pytest.raises(HandlerError) as refused:
        await ledger.reserve("b", [DeviceWant(device="d1")])
    assert refused.value.code == ErrorCode.CONFLICT
    assert "d1" in refused.value.detail
    assert "a" in refused.value.detail


async def test_shareable_device_takes_many_owners() -> None:
    """Owners that all ask to share hold the device together."""
    ledger = _ledger()
    for owner in ("a", "b", "c"):
        await ledger.reserve(owner, [DeviceWant(device="kvm", shareable=True)])
    hold = await ledger.kv.get("node-1.kvm")
    assert hold is not None
    assert hold[0].holders == ("a", "b", "c")


async def test_reservation_is_all_or_nothing() -> None:
    """When one device is taken, the others of the same request are not left held."""
    ledger = _ledger()
    await ledger.reserve("a", [DeviceWant(device="d2")])
    with pytest.raises(HandlerError):
        await ledger.reserve("b", [DeviceWant(device="d1"), DeviceWant(device="d2")])
    untouched = await ledger.kv.get("node-1.d1")
    assert untouched is None or untouched[0].holders == ()


async def test_reserve_again_is_idempotent_and_release_frees() -> None:
    """The same owner reserving twice holds once; after release another owner may reserve."""
    ledger = _ledger()
    assert await ledger.reserve("a", [DeviceWant(device="d1")]) == ("d1",)
    assert await ledger.reserve("a", [DeviceWant(device="d1")]) == ("d1",)
    assert await ledger.release("a", None) == ("d1",)
    assert await ledger.release("a", None) == ()
    await ledger.reserve("b", [DeviceWant(device="d1")])


async def test_write_by_another_instance_is_seen_through_compare_and_set() -> None:
    """A stale cache loses the compare-and-set, re-reads, and refuses the held device."""
    kv = MemoryKv[Hold]()
    first, second = Ledger("node-1", kv), Ledger("node-1", kv)
    await second.reserve("x", [DeviceWant(device="d1")])  # warms second's cache
    await second.release("x", ["d1"])
    await first.reserve("a", [DeviceWant(device="d1")])
    with pytest.raises(HandlerError) as refused:
        await second.reserve("b", [DeviceWant(device="d1")])
    assert refused.value.code == ErrorCode.CONFLICT


def _slot(consumed: int = 1, share_id: str | None = None) -> DeviceWant:
    return DeviceWant(
        device="udmabuf",
        shareable=True,
        capacity={"slots": 3},
        consumed={"slots": consumed},
        share_id=share_id,
    )


async def test_consumable_capacity_is_never_overcommitted_across_claims() -> None:
    """Three one-slot claims fill a three-slot device; a fourth is refused with the sum in
    the reason, and a release frees its slot for the next."""
    ledger = _ledger()
    for owner in ("a", "b", "c"):
        await ledger.reserve(owner, [_slot()])
    with pytest.raises(HandlerError) as refused:
        await ledger.reserve("d", [_slot()])
    assert refused.value.code == ErrorCode.CONFLICT
    assert "device udmabuf has no capacity left (slots: 3 of 3 in use" in refused.value.detail
    await ledger.release("b", None)
    await ledger.reserve("d", [_slot()])
    hold = await ledger.kv.get("node-1.udmabuf")
    assert hold is not None
    assert hold[0].holders == ("a", "c", "d")
    assert hold[0].used == {"a": {"slots": 1}, "c": {"slots": 1}, "d": {"slots": 1}}


async def test_a_claim_asking_for_more_consumes_more() -> None:
    """consumedCapacity above the default counts in full: 2 + 1 fill three slots."""
    ledger = _ledger()
    await ledger.reserve("big", [_slot(consumed=2)])
    await ledger.reserve("small", [_slot()])
    with pytest.raises(HandlerError, match="2 more asked"):
        await ledger.reserve("other", [_slot(consumed=2)])


async def test_two_shares_of_one_device_in_one_claim_are_counted_apart() -> None:
    """Two results of one claim on the same device with their own shareIDs take a slot each,
    under keys of their own, and the claim's release frees both."""
    ledger = _ledger()
    await ledger.reserve("a", [_slot(share_id="s1"), _slot(share_id="s2")])
    hold = await ledger.kv.get("node-1.udmabuf")
    assert hold is not None
    assert hold[0].used == {"a#s1": {"slots": 1}, "a#s2": {"slots": 1}}
    await ledger.reserve("b", [_slot()])
    with pytest.raises(HandlerError, match="3 of 3 in use"):
        await ledger.reserve("c", [_slot()])
    await ledger.release("a", None)
    hold = await ledger.kv.get("node-1.udmabuf")
    assert hold is not None
    assert hold[0].used == {"b": {"slots": 1}}
