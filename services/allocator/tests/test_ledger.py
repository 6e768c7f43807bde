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
