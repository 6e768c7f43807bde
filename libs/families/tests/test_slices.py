"""Slice planning: stable placement, generation bumps only when needed, limits respected."""

from __future__ import annotations

from typing import Any

import msgspec

from hostdev_events.inventory import Attribute, ConsumableCapacity, CounterUse, Device
from hostdev_families.slices import MAX_DEVICES, Existing, Pool, body, device_json, plan

POOL = Pool(node="node-1", driver="hostdev.k8s.io", node_uid="uid-1")


def _devices(count: int, prefix: str = "d") -> list[Device]:
    return [Device(name=f"{prefix}{i:04d}", family="hostpath") for i in range(count)]


def _existing(name: str, devices: list[Device], generation: int = 1, count: int = 1) -> Existing:
    return Existing(
        name=name,
        resource_version=f"rv-{name}",
        generation=generation,
        slice_count=count,
        devices=tuple(device_json(d) for d in devices),
    )


def _names(body: dict[str, Any]) -> list[str]:
    return [d["name"] for d in body["spec"]["devices"]]


def test_first_publication_creates_slices_of_at_most_128() -> None:
    """300 devices become three new slices, generation 1, count 3."""
    result = plan(POOL, [], _devices(300))
    assert [len(_names(b)) for b in result.creates] == [MAX_DEVICES, MAX_DEVICES, 44]
    assert {b["spec"]["pool"]["generation"] for b in result.creates} == {1}
    assert {b["spec"]["pool"]["resourceSliceCount"] for b in result.creates} == {3}
    assert result.creates[0]["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_empty_inventory_still_publishes_one_empty_slice() -> None:
    """An empty pool says 'driver running, no devices'."""
    result = plan(POOL, [], [])
    (only,) = result.creates
    assert only["spec"]["devices"] == []


def test_nothing_changed_writes_nothing() -> None:
    """The same devices in the same slices produce an empty plan."""
    devices = _devices(3)
    assert plan(POOL, [_existing("s1", devices)], devices).empty


def test_one_changed_device_rewrites_only_its_slice_without_a_bump() -> None:
    """Changing one device in a two-slice pool updates that slice alone, same generation."""
    devices = _devices(200)
    existing = [_existing("s1", devices[:128], 4, 2), _existing("s2", devices[128:], 4, 2)]
    changed = list(devices)
    changed[150] = Device(
        name=changed[150].name, family="hostpath", attributes={"x": Attribute(int_=1)}
    )
    result = plan(POOL, existing, changed)
    assert not result.creates
    assert not result.deletes
    ((name, version, body),) = result.updates
    assert (name, version) == ("s2", "rv-s2")
    assert body["spec"]["pool"] == {"name": "node-1", "generation": 4, "resourceSliceCount": 2}


def test_added_device_fills_a_slice_with_room_and_keeps_others_in_place() -> None:
    """A new device joins the slice that has room; devices never move between slices."""
    devices = _devices(130)
    existing = [_existing("s1", devices[:128], 1, 2), _existing("s2", devices[128:], 1, 2)]
    grown = [*devices, Device(name="a-new", family="hostpath")]
    result = plan(POOL, existing, grown)
    ((name, _, body),) = result.updates
    assert name == "s2"
    assert _names(body) == ["d0128", "d0129", "a-new"]


def test_slice_count_change_bumps_generation_everywhere() -> None:
    """Needing a new slice bumps the generation in every slice of the pool."""
    devices = _devices(128)
    result = plan(POOL, [_existing("s1", devices)], _devices(129))
    assert [u[0] for u in result.updates] == ["s1"]
    assert len(result.creates) == 1
    bodies = [result.updates[0][2], *result.creates]
    assert {b["spec"]["pool"]["generation"] for b in bodies} == {2}
    assert {b["spec"]["pool"]["resourceSliceCount"] for b in bodies} == {2}


def test_emptied_slice_is_deleted_and_generation_bumped() -> None:
    """When all of a slice's devices are gone it is deleted and the rest move to a new generation."""
    devices = _devices(130)
    existing = [_existing("s1", devices[:128], 1, 2), _existing("s2", devices[128:], 1, 2)]
    result = plan(POOL, existing, devices[:128])
    assert result.deletes == ["s2"]
    ((name, _, body),) = result.updates
    assert name == "s1"
    assert body["spec"]["pool"] == {"name": "node-1", "generation": 2, "resourceSliceCount": 1}


def test_tainted_devices_keep_slices_at_64() -> None:
    """With unhealthy devices tainted, no slice holds more than 64 devices."""
    devices = [Device(name=f"d{i:04d}", family="hostpath", healthy=i % 2 == 0) for i in range(200)]
    result = plan(POOL, [], devices, taint_effect="NoSchedule")
    sizes = [len(_names(b)) for b in result.creates]
    assert max(sizes) <= 64
    assert sum(sizes) == 200
    tainted = [d for b in result.creates for d in b["spec"]["devices"] if "taints" in d]
    assert len(tainted) == 100
    assert tainted[0]["taints"] == [{"key": "hostdev.k8s.io/unhealthy", "effect": "NoSchedule"}]


def test_untainted_slices_still_take_128() -> None:
    """Without taints (the setting off) the same devices pack 128 to a slice."""
    devices = [Device(name=f"d{i:04d}", family="hostpath", healthy=False) for i in range(200)]
    assert [len(_names(b)) for b in plan(POOL, [], devices).creates] == [128, 72]


def test_planned_bodies_are_what_body_makes_of_the_same_devices() -> None:
    """plan puts the devices' JSON in its bodies as encoded, without checking it again:
    the result equals `body` (which checks and re-encodes) for every kind of device, in
    device slices and in the counter slice."""
    devices = [
        Device(name="plain", family="hostpath", attributes={"b": Attribute(string="x")}),
        Device(name="sick", family="hostpath", healthy=False, health_message="gone"),
        Device(
            name="kvm",
            family="hostpath",
            shareable=True,
            capacity={"memory": "1Gi"},
            consumable={"slots": ConsumableCapacity(value=4)},
        ),
        Device(
            name="vgpu",
            family="mdev",
            consumes=(CounterUse(counter_set="gpu-0", counter="slots", value=1, capacity=8),),
        ),
    ]
    result = plan(POOL, [], devices, taint_effect="NoSchedule")
    device_slices = [b for b in result.creates if b["spec"].get("devices")]
    counter_slices = [b for b in result.creates if b["spec"].get("sharedCounters")]
    assert len(device_slices) == 1
    assert len(counter_slices) == 1
    for made in result.creates:
        spec = made["spec"]
        pool = spec["pool"]
        expected = body(
            POOL,
            pool["generation"],
            pool["resourceSliceCount"],
            spec.get("devices") or [],
            spec.get("sharedCounters"),
        )
        assert made == expected
        assert msgspec.json.encode(made) == msgspec.json.encode(expected)
    assert [d["name"] for d in device_slices[0]["spec"]["devices"]] == [
        "kvm",
        "plain",
        "sick",
        "vgpu",
    ]
    assert device_slices[0]["spec"]["devices"][2]["taints"][0]["effect"] == "NoSchedule"
