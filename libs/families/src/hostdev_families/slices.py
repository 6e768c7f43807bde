"""ResourceSlice planning: which devices go in which slice, and what to write. Pure functions.

A device keeps the slice it was published in, so a change to one device rewrites
one slice. New devices fill slices with room, then new slices. The pool
generation is bumped (in every slice) only when more than one slice changes or
the slice count changes; a single slice update is atomic on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from hostdev_events.inventory import Attribute, Device

MAX_DEVICES = 128
MAX_DEVICES_WITH_TAINTS = 64
API_VERSION = "resource.k8s.io/v1"


@dataclass(frozen=True, slots=True)
class Pool:
    """Who publishes: the node, its driver and the Node's UID for the owner reference."""

    node: str
    driver: str
    node_uid: str = ""


@dataclass(frozen=True, slots=True)
class Existing:
    """A slice on the server, with the devices and generation we believe it has."""

    name: str
    resource_version: str
    generation: int
    slice_count: int
    devices: tuple[dict[str, Any], ...] = ()
    counters: tuple[dict[str, Any], ...] = ()  # sharedCounters: a slice has these or devices


@dataclass(slots=True)
class SlicePlan:
    """What to write: new slice bodies, (name, resourceVersion, body) updates, and deletions."""

    creates: list[dict[str, Any]] = field(default_factory=list)
    updates: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing to do."""
        return not (self.creates or self.updates or self.deletes)


TAINT_KEY = "hostdev.k8s.io/unhealthy"


# resource.k8s.io/v1 ResourceSlice, as far as this driver writes it. Built as Structs so a
# misspelt or mistyped field fails the type check; turned into JSON only at the API edge
# (and compared there with what the server holds).
class _Api(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    rename="camel",
    forbid_unknown_fields=True,
):
    """Base: camelCase names, unset fields left out as the API server leaves them out; a
    field this module does not know is refused rather than silently dropped."""


class Quantity(_Api, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """A capacity or counter value (a Kubernetes quantity, as its string)."""

    value: str


class ValidRange(_Api, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """capacity.requestPolicy.validRange: amounts from min to max in steps."""

    min: str
    max: str
    step: str | None = None


class RequestPolicy(_Api, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """capacity.requestPolicy (KEP-5075): what a claim takes, and what it may ask for."""

    default: str
    valid_range: ValidRange


class Capacity(_Api, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """devices[].capacity[name]: a quantity, with a request policy when consumable."""

    value: str
    request_policy: RequestPolicy | None = None


class CounterSet(_Api, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """spec.sharedCounters[]."""

    name: str
    counters: dict[str, Quantity]


class CounterConsumption(_Api, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """devices[].consumesCounters[]."""

    counter_set: str
    counters: dict[str, Quantity]


class Taint(_Api, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """devices[].taints[]."""

    key: str
    effect: str


class SliceDevice(_Api, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """spec.devices[]."""

    name: str
    attributes: dict[str, Attribute] = {}
    capacity: dict[str, Capacity] = {}
    allow_multiple_allocations: bool = False
    consumes_counters: tuple[CounterConsumption, ...] = ()
    taints: tuple[Taint, ...] = ()


class OwnerReference(_Api, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """metadata.ownerReferences[]: the Node, so slices go with it."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool = False


class SliceMeta(_Api, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """metadata of a slice to create (the server makes the name)."""

    generate_name: str
    owner_references: tuple[OwnerReference, ...] = ()


class PoolRef(_Api, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """spec.pool; every field written, a generation of 0 included."""

    name: str
    generation: int
    resource_slice_count: int


class SliceSpec(_Api, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """spec: devices or sharedCounters, never both (since 1.35)."""

    driver: str
    node_name: str
    pool: PoolRef
    devices: tuple[SliceDevice, ...] | None = None
    shared_counters: tuple[CounterSet, ...] | None = None


class ResourceSlice(_Api, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """A whole slice as written. apiVersion and kind have no defaults: omit_defaults would
    leave them out, and a slice read back or piped to kubectl needs them."""

    api_version: str
    kind: str
    metadata: SliceMeta
    spec: SliceSpec


def slice_device(device: Device, taint_effect: str | None = None) -> SliceDevice:
    """A ResourceSlice device; unhealthy ones tainted when asked."""
    tainted = taint_effect is not None and not device.healthy
    return SliceDevice(
        name=device.name,
        attributes=dict(sorted(device.attributes.items())),
        capacity=_capacity(device),
        allow_multiple_allocations=device.shareable,
        consumes_counters=_consumes(device),
        taints=(Taint(key=TAINT_KEY, effect=taint_effect),) if tainted and taint_effect else (),
    )


def _json(value: object) -> Any:
    """Exactly the JSON the API server gets (and returns): lists, dicts, strings, numbers."""
    return msgspec.json.decode(msgspec.json.encode(value))


def device_json(device: Device, taint_effect: str | None = None) -> dict[str, Any]:
    """`slice_device` as the API's JSON."""
    out: dict[str, Any] = _json(slice_device(device, taint_effect))
    return out


def _capacity(device: Device) -> dict[str, Capacity]:
    """Fixed capacities, and for a shared device its KEP-5075 consumable ones: a claim takes
    `default` unless it asks for more, whole units from `default` up to the total."""
    out = {k: Capacity(value=v) for k, v in sorted(device.capacity.items())}
    if not (device.consumable and device.shareable):
        return out
    for name, capacity in sorted(device.consumable.items()):
        step = "1" if capacity.default + 1 <= capacity.value else None  # min + step <= total
        out[name] = Capacity(
            value=str(capacity.value),
            request_policy=RequestPolicy(
                default=str(capacity.default),
                valid_range=ValidRange(
                    min=str(capacity.default), max=str(capacity.value), step=step
                ),
            ),
        )
    return out


def _consumes(device: Device) -> tuple[CounterConsumption, ...]:
    sets: dict[str, dict[str, Quantity]] = {}
    for use in device.consumes:
        sets.setdefault(use.counter_set, {})[use.counter] = Quantity(value=str(use.value))
    return tuple(
        CounterConsumption(counter_set=name, counters=counters)
        for name, counters in sorted(sets.items())
    )


def counter_sets(devices: Sequence[Device]) -> list[dict[str, Any]]:
    """The pool's shared counter sets, from the capacities the devices carry, as JSON."""
    sets: dict[str, dict[str, Quantity]] = {}
    for device in devices:
        for use in device.consumes:
            sets.setdefault(use.counter_set, {})[use.counter] = Quantity(value=str(use.capacity))
    typed = [CounterSet(name=name, counters=counters) for name, counters in sorted(sets.items())]
    found: list[dict[str, Any]] = _json(typed)
    return found


def _limited(device: dict[str, Any]) -> bool:
    return "taints" in device or "consumesCounters" in device


@dataclass(slots=True)
class _Group:
    """The device names of one slice, with what decides its size limit kept up to date."""

    names: list[str] = field(default_factory=list)
    limited: bool = False

    def fits(self, device: dict[str, Any]) -> bool:
        limited = self.limited or _limited(device)
        return len(self.names) < (MAX_DEVICES_WITH_TAINTS if limited else MAX_DEVICES)

    def add(self, name: str, device: dict[str, Any]) -> None:
        self.names.append(name)
        self.limited = self.limited or _limited(device)


def _assign(existing: Sequence[Existing], wanted: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Device names per slice: existing slices first (same order), then new ones.

    Linear in the number of devices: each group knows its size and limit, and new
    devices fill groups from the first with room on (a second cursor for the devices
    that need the smaller limit).
    """
    placed: set[str] = set()
    groups: list[_Group] = []
    for current in existing:
        group = _Group()
        for device in current.devices:
            name = device["name"]
            if name in wanted and name not in placed and group.fits(wanted[name]):
                group.add(name, wanted[name])
                placed.add(name)
        groups.append(group)
    cursors = {False: 0, True: 0}
    for name in sorted(n for n in wanted if n not in placed):
        device = wanted[name]
        kind = _limited(device)
        while cursors[kind] < len(groups) and not groups[cursors[kind]].fits(device):
            cursors[kind] += 1
        if cursors[kind] == len(groups):
            groups.append(_Group())
        groups[cursors[kind]].add(name, device)
    return [g.names for g in groups]


MAX_COUNTER_SETS = 8  # per slice


def body(
    pool: Pool,
    generation: int,
    count: int,
    devices: list[dict[str, Any]],
    counters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A full ResourceSlice object (without a name: the server generates one), as JSON.

    `devices` and `counters` are the JSON of SliceDevice and CounterSet: the form they are
    compared in with what the server holds; they are checked against those types here.
    """
    owner = OwnerReference(
        api_version="v1", kind="Node", name=pool.node, uid=pool.node_uid, controller=True
    )
    spec = SliceSpec(
        driver=pool.driver,
        node_name=pool.node,
        pool=PoolRef(name=pool.node, generation=generation, resource_slice_count=count),
    )
    if counters:  # since 1.35 never in the same slice as devices
        spec = msgspec.structs.replace(
            spec, shared_counters=msgspec.convert(counters, tuple[CounterSet, ...])
        )
    else:
        spec = msgspec.structs.replace(
            spec, devices=msgspec.convert(devices, tuple[SliceDevice, ...])
        )
    typed = ResourceSlice(
        api_version=API_VERSION,
        kind="ResourceSlice",
        metadata=SliceMeta(
            generate_name=f"{pool.node}-{pool.driver}-",
            owner_references=(owner,) if pool.node_uid else (),
        ),
        spec=spec,
    )
    out: dict[str, Any] = _json(typed)
    return out


def _body_of_json(
    pool: Pool,
    generation: int,
    count: int,
    devices: list[dict[str, Any]],
    counters: list[dict[str, Any]],
) -> dict[str, Any]:
    """`body` for devices that are already the JSON of SliceDevice (made by `plan`): the
    same object, without checking and encoding again thousands of devices just encoded."""
    if counters:
        return body(pool, generation, count, devices, counters)
    out = body(pool, generation, count, [])
    out["spec"]["devices"] = list(devices)
    return out


@dataclass(frozen=True, slots=True)
class _Want:
    devices: list[dict[str, Any]]
    counters: list[dict[str, Any]]


def _device_slices(
    existing: Sequence[Existing], wanted: dict[str, dict[str, Any]]
) -> tuple[list[tuple[Existing, _Want]], list[_Want]]:
    groups = _assign(existing, wanted)
    kept = [
        (e, _Want([wanted[n] for n in g], [])) for e, g in zip(existing, groups, strict=False) if g
    ]
    fresh = [_Want([wanted[n] for n in g], []) for g in groups[len(existing) :]]
    return kept, fresh


def _counter_slices(
    existing: Sequence[Existing], sets: list[dict[str, Any]]
) -> tuple[list[tuple[Existing, _Want]], list[_Want]]:
    chunks = [sets[i : i + MAX_COUNTER_SETS] for i in range(0, len(sets), MAX_COUNTER_SETS)]
    kept = [(e, _Want([], c)) for e, c in zip(existing, chunks, strict=False)]
    fresh = [_Want([], c) for c in chunks[len(existing) :]]
    return kept, fresh


def plan(
    pool: Pool,
    existing: Sequence[Existing],
    devices: Sequence[Device],
    taint_effect: str | None = None,
) -> SlicePlan:
    """The writes that make the server hold exactly `devices` (and their counters)."""
    # One encoding of every device: the JSON is compared with the server's and sent as is.
    encoded: list[dict[str, Any]] = _json([slice_device(d, taint_effect) for d in devices])
    wanted = {d.name: j for d, j in zip(devices, encoded, strict=True)}
    ordered = sorted(existing, key=lambda e: e.name)
    device_kept, device_fresh = _device_slices([e for e in ordered if not e.counters], wanted)
    counter_kept, counter_fresh = _counter_slices(
        [e for e in ordered if e.counters], counter_sets(devices)
    )
    kept, fresh = device_kept + counter_kept, device_fresh + counter_fresh
    if not kept and not fresh:  # an empty pool still publishes one slice: "driver up, no devices"
        if ordered:
            kept = [(ordered[0], _Want([], []))]
        else:
            fresh = [_Want([], [])]
    deletes = [e.name for e in ordered if all(e is not k for k, _ in kept)]
    count = len(kept) + len(fresh)
    generation = max((e.generation for e in ordered), default=0)
    changed = [
        (e, w) for e, w in kept if list(e.devices) != w.devices or list(e.counters) != w.counters
    ]
    in_step = all(e.generation == generation and e.slice_count == count for e, _ in kept)
    result = SlicePlan(deletes=deletes)
    if not fresh and not deletes and in_step and len(changed) <= 1:
        for e, w in changed:  # one slice: an in-place update is atomic, no bump needed
            result.updates.append(
                (
                    e.name,
                    e.resource_version,
                    _body_of_json(pool, generation, count, w.devices, w.counters),
                )
            )
        return result
    generation += 1
    for e, w in kept:
        result.updates.append(
            (
                e.name,
                e.resource_version,
                _body_of_json(pool, generation, count, w.devices, w.counters),
            )
        )
    result.creates.extend(
        _body_of_json(pool, generation, count, w.devices, w.counters) for w in fresh
    )
    return result
