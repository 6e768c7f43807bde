"""Properties of the allocator over generated pools and claims (hypothesis): no exclusive device
is given twice, shared counters are never exceeded, every success meets its counts and
constraints, and every failure is real — an exhaustive search finds no allocation either."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hostdev_scheduling import ClaimOutcome, load_objects, simulate

DRIVER = "hostdev.k8s.io"
COUNTER_TOTAL = 4

CLASS = {
    "apiVersion": "resource.k8s.io/v1",
    "kind": "DeviceClass",
    "metadata": {"name": "pci"},
    "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]},
}


@dataclass(frozen=True)
class GenDevice:
    name: str
    numa: int
    weight: int  # what it consumes of the pool's one counter


@dataclass(frozen=True)
class GenRequest:
    name: str
    count: int
    numa: int | None  # a selector on numaNode, or none


@dataclass(frozen=True)
class GenClaim:
    name: str
    requests: tuple[GenRequest, ...]
    same_numa: bool  # a matchAttribute constraint over all requests


devices_st = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 2)), min_size=1, max_size=6).map(
    lambda items: [GenDevice(f"d{i}", numa, weight) for i, (numa, weight) in enumerate(items)]
)
request_st = st.tuples(st.integers(1, 2), st.one_of(st.none(), st.integers(0, 1)))
claim_st = st.tuples(st.lists(request_st, min_size=1, max_size=2), st.booleans())
claims_st = st.lists(claim_st, min_size=1, max_size=4).map(
    lambda items: [
        GenClaim(
            f"c{i}",
            tuple(GenRequest(f"r{j}", count, numa) for j, (count, numa) in enumerate(requests)),
            same_numa,
        )
        for i, (requests, same_numa) in enumerate(items)
    ]
)


def documents(devices: list[GenDevice], claims: list[GenClaim]) -> list[dict[str, Any]]:
    slices = [
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": "counters"},
            "spec": {
                "driver": DRIVER,
                "nodeName": "n",
                "pool": {"name": "n", "generation": 1, "resourceSliceCount": 2},
                "sharedCounters": [
                    {"name": "card", "counters": {"units": {"value": str(COUNTER_TOTAL)}}}
                ],
            },
        },
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": "devices"},
            "spec": {
                "driver": DRIVER,
                "nodeName": "n",
                "pool": {"name": "n", "generation": 1, "resourceSliceCount": 2},
                "devices": [
                    {
                        "name": d.name,
                        "attributes": {"numaNode": {"int": d.numa}},
                        "consumesCounters": [
                            {"counterSet": "card", "counters": {"units": {"value": str(d.weight)}}}
                        ],
                    }
                    for d in devices
                ],
            },
        },
    ]
    claim_docs = []
    for c in claims:
        requests = []
        for r in c.requests:
            exactly: dict[str, Any] = {"deviceClassName": "pci", "count": r.count}
            if r.numa is not None:
                exactly["selectors"] = [
                    {"cel": {"expression": f'device.attributes["{DRIVER}"].numaNode == {r.numa}'}}
                ]
            requests.append({"name": r.name, "exactly": exactly})
        spec: dict[str, Any] = {"requests": requests}
        if c.same_numa:
            spec["constraints"] = [{"matchAttribute": f"{DRIVER}/numaNode"}]
        claim_docs.append(
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceClaim",
                "metadata": {"name": c.name},
                "spec": {"devices": spec},
            }
        )
    return [CLASS, *slices, *claim_docs]


def run(devices: list[GenDevice], claims: list[GenClaim]) -> list[ClaimOutcome]:
    return simulate(load_objects(documents(devices, claims)), node="n")


def feasible(claim: GenClaim, free: list[GenDevice], units_left: int) -> bool:
    """Exhaustive search, independent of the allocator: can the claim be met from `free`?"""
    slots = [(r, k) for r in claim.requests for k in range(r.count)]
    for chosen in itertools.permutations(free, len(slots)):
        if any(
            r.numa is not None and d.numa != r.numa for (r, _), d in zip(slots, chosen, strict=True)
        ):
            continue
        if claim.same_numa and len({d.numa for d in chosen}) > 1:
            continue
        if sum(d.weight for d in chosen) > units_left:
            continue
        return True
    return False


@settings(max_examples=120, deadline=None, database=None)
@given(devices_st, claims_st)
def test_allocations_are_exclusive_within_counters_and_failures_are_real(
    devices: list[GenDevice], claims: list[GenClaim]
) -> None:
    outcomes = run(devices, claims)
    by_name = {d.name: d for d in devices}
    held: set[str] = set()
    units_used = 0
    for claim, outcome in zip(claims, outcomes, strict=True):
        free = [d for d in devices if d.name not in held]
        if outcome.error is not None:
            assert outcome.devices == []
            assert not feasible(claim, free, COUNTER_TOTAL - units_used), (claim, outcome.error)
            continue
        names = [d.device for d in outcome.devices]
        # Never a device twice, never one an earlier claim holds.
        assert len(names) == len(set(names))
        assert not held.intersection(names)
        # Every request got its count, with devices its selector accepts.
        for request in claim.requests:
            got = [by_name[d.device] for d in outcome.devices if d.request == request.name]
            assert len(got) == request.count
            assert all(request.numa is None or d.numa == request.numa for d in got)
        if claim.same_numa:
            assert len({by_name[n].numa for n in names}) == 1
        held.update(names)
        units_used += sum(by_name[n].weight for n in names)
        assert units_used <= COUNTER_TOTAL


@settings(max_examples=40, deadline=None, database=None)
@given(devices_st, claims_st)
def test_simulation_is_deterministic(devices: list[GenDevice], claims: list[GenClaim]) -> None:
    assert run(devices, claims) == run(devices, claims)


@settings(max_examples=60, deadline=None, database=None)
@given(st.integers(1, 5), st.lists(st.integers(1, 6), min_size=1, max_size=6))
def test_shared_device_capacity_is_never_exceeded(total: int, asks: list[int]) -> None:
    """KEP-5075: claims share a device while the capacity they consume fits its capacity."""
    docs: list[dict[str, Any]] = [
        CLASS,
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": "s"},
            "spec": {
                "driver": DRIVER,
                "nodeName": "n",
                "pool": {"name": "n", "generation": 1, "resourceSliceCount": 1},
                "devices": [
                    {
                        "name": "nic",
                        "allowMultipleAllocations": True,
                        "capacity": {"bw": {"value": str(total)}},
                    }
                ],
            },
        },
    ]
    for i, ask in enumerate(asks):
        docs.append(
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceClaim",
                "metadata": {"name": f"c{i}"},
                "spec": {
                    "devices": {
                        "requests": [
                            {
                                "name": "r",
                                "exactly": {
                                    "deviceClassName": "pci",
                                    "capacity": {"requests": {"bw": str(ask)}},
                                },
                            }
                        ]
                    }
                },
            }
        )
    used = 0
    for ask, outcome in zip(asks, simulate(load_objects(docs), node="n"), strict=True):
        fits = used + ask <= total
        assert (outcome.error is None) == fits
        if fits:
            used += ask
