"""Claim cases with the allocation each should get, written from the Kubernetes documentation
and KEPs (not from running the code). Each case's `why` cites the section it follows.

References:
- API: the resource.k8s.io/v1 API reference (field descriptions of DeviceRequest,
  ExactDeviceRequest, DeviceSubRequest, DeviceConstraint, CELDeviceSelector, DeviceTaint,
  DeviceToleration, CapacityRequestPolicy, ResourceSlice, ResourcePool).
- DRA docs: kubernetes.io/docs/concepts/scheduling-eviction/dynamic-resource-allocation/.
- KEP-4381 (structured parameters), KEP-4816 (prioritized list), KEP-4815 (partitionable
  devices), KEP-5075 (consumable capacity), KEP-5055 (device taints), KEP-5018 (admin access).

The DeviceClasses are the project's own (k8s/base/deviceclasses.yaml); the slices have the shape
discovery publishes for a host (driver hostdev.k8s.io, one pool per node, attributes `family`,
`numaNode`, `vendor` in the driver's domain, `resource.kubernetes.io/pciBusID`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml

from hostdev_scheduling import ClaimOutcome, load_objects, simulate
from hostdev_scheduling.quantity import parse_quantity

DRIVER = "hostdev.k8s.io"
NODE = "node-a"
PCI = "pci.hostdev.k8s.io"
USB = "usb.hostdev.k8s.io"
ANY = "hostdev.k8s.io"
CLASSES_FILE = Path(__file__).resolve().parents[3] / "k8s" / "base" / "deviceclasses.yaml"
PROJECT_CLASSES: list[dict[str, Any]] = [
    d for d in yaml.safe_load_all(CLASSES_FILE.read_text()) if d
]


# ---------- builders: resource.k8s.io/v1 objects as YAML would give them ----------


def dev(name: str, family: str = "pci", numa: int | None = 0, **extra: Any) -> dict[str, Any]:
    """A device as discovery publishes it; `attributes=` adds more, other keys go to the device."""
    attributes: dict[str, Any] = {"family": {"string": family}}
    if numa is not None:
        attributes["numaNode"] = {"int": numa}
    attributes.update(extra.pop("attributes", {}))
    return {"name": name, "attributes": attributes, **extra}


def rslice(
    *devices: dict[str, Any],
    name: str = "node-a-hostdev",
    pool: str = NODE,
    generation: int = 1,
    count: int = 1,
    shared: list[dict[str, Any]] | None = None,
    **where: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "driver": DRIVER,
        "pool": {"name": pool, "generation": generation, "resourceSliceCount": count},
    }
    spec.update(where or {"nodeName": NODE})
    if shared is not None:
        spec["sharedCounters"] = shared
    else:
        spec["devices"] = list(devices)
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": name},
        "spec": spec,
    }


def exactly(name: str, cls: str = PCI, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"deviceClassName": cls}
    selectors = fields.pop("selectors", ())
    if selectors:
        body["selectors"] = [{"cel": {"expression": s}} for s in selectors]
    body.update(fields)
    return {"name": name, "exactly": body}


def sub(name: str, cls: str = PCI, **fields: Any) -> dict[str, Any]:
    body = exactly(name, cls, **fields)["exactly"]
    return {"name": name, **body}


def first(name: str, *subs: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "firstAvailable": list(subs)}


def claim(
    name: str, *requests: dict[str, Any], ns: str = "default", **extra: Any
) -> dict[str, Any]:
    devices: dict[str, Any] = {"requests": list(requests)}
    if "constraints" in extra:
        devices["constraints"] = extra.pop("constraints")
    obj: dict[str, Any] = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"devices": devices},
    }
    if "allocation" in extra:
        obj["status"] = {"allocation": {"devices": {"results": extra.pop("allocation")}}}
    return obj


def result(request: str, device: str, **extra: Any) -> dict[str, Any]:
    return {"request": request, "driver": DRIVER, "pool": NODE, "device": device, **extra}


def device_class(name: str, expression: str) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": name},
        "spec": {"selectors": [{"cel": {"expression": expression}}]},
    }


def namespace(name: str, admin: bool) -> dict[str, Any]:
    labels = {"resource.kubernetes.io/admin-access": "true"} if admin else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def template(name: str, *requests: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"spec": {"devices": {"requests": list(requests)}}},
    }


def pod(name: str, **entries: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"resourceClaims": [{"name": k, **v} for k, v in entries.items()]},
    }


def counter_set(name: str, **counters: str) -> dict[str, Any]:
    return {"name": name, "counters": {k: {"value": v} for k, v in counters.items()}}


def consumes(counter_set_name: str, **counters: str) -> list[dict[str, Any]]:
    return [
        {"counterSet": counter_set_name, "counters": {k: {"value": v} for k, v in counters.items()}}
    ]


# ---------- expectations ----------


@dataclass(frozen=True)
class Gets:
    """The claim is allocated exactly these (request, device) pairs, in request order."""

    pairs: tuple[tuple[str, str], ...]
    admin: bool = False


@dataclass(frozen=True)
class GetsDevices:
    """The claim is allocated these devices; which request gets which is the allocator's choice."""

    devices: frozenset[str]


@dataclass(frozen=True)
class Fails:
    """The claim cannot be satisfied, for a reason that mentions `reason`."""

    reason: str


Expectation = Gets | GetsDevices | Fails


@dataclass(frozen=True)
class Case:
    id: str
    why: str
    docs: list[dict[str, Any]]
    expect: Mapping[str, Expectation]
    node: str = NODE
    extra_classes: list[dict[str, Any]] = field(default_factory=list)


def gets(*pairs: tuple[str, str]) -> Gets:
    return Gets(tuple(pairs))


THREE_PCI = rslice(dev("pci-0", numa=0), dev("pci-1", numa=1), dev("pci-2", numa=1))

CASES = [
    # ----- DeviceClass and request selectors in CEL (KEP-4381, CELDeviceSelector) -----
    Case(
        "class-selects-family",
        "KEP-4381 'DeviceClass': a request only gets devices its class's selectors accept; the "
        "project's usb class selects family == usb, so the USB device and not the PCI one.",
        [
            rslice(dev("pci-0"), dev("usb-1-2", family="usb", numa=None)),
            claim("c", exactly("usb", USB)),
        ],
        {"c": gets(("usb", "usb-1-2"))},
    ),
    Case(
        "request-selector-adds-to-class",
        "API ExactDeviceRequest.selectors: 'All selectors must be satisfied for a device to be "
        "considered', on top of the class's: only the 8086 PCI function qualifies.",
        [
            rslice(
                dev("pci-0", attributes={"vendor": {"string": "0x10de"}}),
                dev("pci-1", attributes={"vendor": {"string": "0x8086"}}),
            ),
            claim(
                "c",
                exactly(
                    "nic", selectors=['device.attributes["hostdev.k8s.io"].vendor == "0x8086"']
                ),
            ),
        ],
        {"c": gets(("nic", "pci-1"))},
    ),
    Case(
        "qualified-attribute-grouped-by-domain",
        "CELDeviceSelector: attributes are grouped by prefix; a name 'resource.kubernetes.io/pciBusID'"
        ' is read as device.attributes["resource.kubernetes.io"].pciBusID.',
        [
            rslice(
                dev(
                    "pci-0",
                    attributes={"resource.kubernetes.io/pciBusID": {"string": "0000:01:00.0"}},
                ),
                dev(
                    "pci-1",
                    attributes={"resource.kubernetes.io/pciBusID": {"string": "0000:02:00.0"}},
                ),
            ),
            claim(
                "c",
                exactly(
                    "f",
                    selectors=[
                        'device.attributes["resource.kubernetes.io"].pciBusID == "0000:02:00.0"'
                    ],
                ),
            ),
        ],
        {"c": gets(("f", "pci-1"))},
    ),
    Case(
        "unqualified-attribute-in-driver-domain-int",
        "CELDeviceSelector: an attribute without a domain is in the driver's domain; int "
        "attributes compare as CEL ints (numaNode > 0 keeps only pci-1).",
        [
            rslice(dev("pci-0", numa=0), dev("pci-1", numa=1)),
            claim(
                "c", exactly("f", selectors=['device.attributes["hostdev.k8s.io"].numaNode > 0'])
            ),
        ],
        {"c": gets(("f", "pci-1"))},
    ),
    Case(
        "unknown-domain-is-an-empty-map",
        "CELDeviceSelector: 'If an unknown prefix is used as a lookup in either device.attributes "
        "or device.capacity, an empty map will be returned', so has() on it is false for every device.",
        [
            rslice(dev("pci-0")),
            claim(
                "c", exactly("f", selectors=['!has(device.attributes["gpu.example.com"].model)'])
            ),
        ],
        {"c": gets(("f", "pci-0"))},
    ),
    Case(
        "unknown-field-aborts-allocation",
        "CELDeviceSelector: 'Any reference to an unknown field will cause an evaluation error and "
        "allocation to abort': the claim fails and names the expression.",
        [
            rslice(dev("pci-0")),
            claim(
                "c", exactly("f", selectors=['device.attributes["hostdev.k8s.io"].model == "x"'])
            ),
        ],
        {"c": Fails('device.attributes["hostdev.k8s.io"].model')},
    ),
    Case(
        "full-qualified-name-is-not-a-domain",
        "CELDeviceSelector: device.attributes is keyed by domain only; "
        'device.attributes["hostdev.k8s.io/family"] names an unknown prefix, which is an '
        "empty map, never the attribute, so no device matches.",
        [
            rslice(dev("pci-0")),
            claim(
                "c", exactly("f", selectors=['device.attributes["hostdev.k8s.io/family"] == "pci"'])
            ),
        ],
        {"c": Fails("no device matches")},
    ),
    Case(
        "capacity-as-quantity",
        "CELDeviceSelector: device.capacity[domain].name is a Quantity; the Kubernetes quantity "
        "library's compareTo picks the 16Gi device over the 8Gi one for >= 10Gi.",
        [
            rslice(
                dev("pci-0", capacity={"memory": {"value": "8Gi"}}),
                dev("pci-1", capacity={"memory": {"value": "16Gi"}}),
            ),
            claim(
                "c",
                exactly(
                    "gpu",
                    selectors=[
                        'device.capacity["hostdev.k8s.io"].memory.compareTo(quantity("10Gi")) >= 0'
                    ],
                ),
            ),
        ],
        {"c": gets(("gpu", "pci-1"))},
    ),
    Case(
        "version-attribute-as-semver",
        "API DeviceAttribute.version is a semantic version, exposed to CEL as a semver value: "
        'isGreaterThan(semver("1.5.0")) keeps firmware 2.0.0 only.',
        [
            rslice(
                dev("pci-0", attributes={"firmware": {"version": "1.2.0"}}),
                dev("pci-1", attributes={"firmware": {"version": "2.0.0"}}),
            ),
            claim(
                "c",
                exactly(
                    "f",
                    selectors=[
                        'device.attributes["hostdev.k8s.io"].firmware.isGreaterThan(semver("1.5.0"))'
                    ],
                ),
            ),
        ],
        {"c": gets(("f", "pci-1"))},
    ),
    Case(
        "allow-multiple-allocations-in-cel",
        "CELDeviceSelector: device.allowMultipleAllocations (bool) is the device's field (KEP-5075).",
        [
            rslice(dev("pci-0"), dev("pci-1", allowMultipleAllocations=True)),
            claim("c", exactly("f", selectors=["device.allowMultipleAllocations"])),
        ],
        {"c": gets(("f", "pci-1"))},
    ),
    Case(
        "cel-bind-from-the-bindings-extension",
        "KEP-4381 CEL environment includes cel.bind so a domain is named once.",
        [
            THREE_PCI,
            claim(
                "c",
                exactly(
                    "f",
                    selectors=[
                        'cel.bind(h, device.attributes["hostdev.k8s.io"], h.family == "pci" && h.numaNode == 1)'
                    ],
                    count=2,
                ),
            ),
        ],
        {"c": gets(("f", "pci-1"), ("f", "pci-2"))},
    ),
    # ----- count, allocationMode All, held devices (KEP-4381, API DeviceRequest) -----
    Case(
        "count-and-earlier-claims-hold-devices",
        "KEP-4381: an allocated device is not available to other claims; the first claim takes "
        "two of three PCI functions, the second cannot get two more.",
        [THREE_PCI, claim("first", exactly("f", count=2)), claim("second", exactly("f", count=2))],
        {
            "first": GetsDevices(frozenset({"pci-0", "pci-1"})),
            "second": Fails("allocated to an earlier claim (default/first)"),
        },
    ),
    Case(
        "all-mode-takes-every-matching-device",
        "API ExactDeviceRequest.allocationMode All: 'This request is for all of the matching devices'.",
        [
            rslice(dev("pci-0"), dev("usb-1", family="usb", numa=None), dev("pci-1")),
            claim("c", exactly("all", allocationMode="All")),
        ],
        {"c": gets(("all", "pci-0"), ("all", "pci-1"))},
    ),
    Case(
        "all-mode-needs-at-least-one",
        "API allocationMode All: 'At least one device must exist on the node for the allocation to succeed.'",
        [rslice(dev("pci-0")), claim("c", exactly("all", USB, allocationMode="All"))],
        {"c": Fails("no device matches DeviceClass usb.hostdev.k8s.io")},
    ),
    Case(
        "all-mode-fails-when-one-is-held",
        "API allocationMode All: 'Allocation will fail if some devices are already allocated, "
        "unless adminAccess is requested.'",
        [
            THREE_PCI,
            claim(
                "one", exactly("f", selectors=['device.attributes["hostdev.k8s.io"].numaNode == 0'])
            ),
            claim("all", exactly("all", allocationMode="All")),
        ],
        {
            "one": gets(("f", "pci-0")),
            "all": Fails("allocationMode All needs every matching device"),
        },
    ),
    Case(
        "held-claims-from-status-allocation",
        "KEP-4381: a claim whose status.allocation is set holds its devices; the next claim gets another.",
        [
            rslice(dev("pci-0"), dev("pci-1")),
            claim("old", exactly("f"), allocation=[result("f", "pci-0")]),
            claim("new", exactly("f")),
        ],
        {"old": gets(("f", "pci-0")), "new": gets(("f", "pci-1"))},
    ),
    Case(
        "held-claim-later-in-input-still-holds",
        "KEP-4381: the scheduler sees every allocated claim, whatever order they are listed in.",
        [
            rslice(dev("pci-0"), dev("pci-1")),
            claim("new", exactly("f", count=2)),
            claim("old", exactly("f"), allocation=[result("f", "pci-1")]),
        ],
        {"new": Fails("allocated to an earlier claim"), "old": gets(("f", "pci-1"))},
    ),
    # ----- pools, generations, node selection (KEP-4381, API ResourceSlice/ResourcePool) -----
    Case(
        "only-newest-generation-counts",
        "API ResourcePool.generation: 'combined with the pool name ... the scheduler must only "
        "use slices with the highest generation number' — old-0 of generation 1 is ignored.",
        [
            rslice(dev("old-0"), name="s-old", generation=1),
            rslice(dev("new-0"), name="s-new", generation=2),
            claim("one", exactly("f")),
            claim("two", exactly("f")),
        ],
        {"one": gets(("f", "new-0")), "two": Fails("allocated to an earlier claim")},
    ),
    Case(
        "incomplete-pool-refuses-all-mode",
        "KEP-4381 'Pools': while a pool has fewer slices than resourceSliceCount it is being "
        "updated; a request for all devices cannot know them all and fails.",
        [rslice(dev("pci-0"), count=2), claim("c", exactly("all", allocationMode="All"))],
        {"c": Fails("incomplete")},
    ),
    Case(
        "incomplete-pool-gives-no-device",
        "KEP-4381 'Pools': a pool with fewer slices of its newest generation than "
        "resourceSliceCount is being updated; kube-scheduler allocates nothing from it until it "
        "is complete, but still uses other pools.",
        [
            rslice(dev("pci-0"), name="s-updating", pool="updating", count=2),
            rslice(dev("usb-0", family="usb", numa=None), name="s-usb", pool="usb"),
            claim("pci", exactly("f")),
            claim("usb", exactly("f", USB)),
        ],
        {"pci": Fails("incomplete (being updated)"), "usb": gets(("f", "usb-0"))},
    ),
    Case(
        "invalid-pool-gives-no-device",
        "KEP-4381 'Pools': device names are unique within a pool; a pool that repeats one is "
        "invalid and none of its devices is allocated.",
        [rslice(dev("pci-0"), dev("pci-0", numa=1)), claim("c", exactly("f"))],
        {"c": Fails("invalid")},
    ),
    Case(
        "all-mode-with-a-constraint-it-cannot-meet",
        "API DeviceConstraint + allocationMode All: every matching device must be in the result, "
        "so a matchAttribute the devices disagree on makes the claim fail.",
        [
            THREE_PCI,
            claim(
                "c",
                exactly("all", allocationMode="All"),
                constraints=[{"matchAttribute": "hostdev.k8s.io/numaNode"}],
            ),
        ],
        {"c": Fails("would break the constraint matchAttribute hostdev.k8s.io/numaNode")},
    ),
    Case(
        "node-selection",
        "API ResourceSliceSpec: nodeName names one node, allNodes serves every node, nodeSelector "
        "selects nodes by label (kubernetes.io/hostname here); node-b's slice is not node-a's.",
        [
            rslice(dev("a-0"), name="s-a", pool="a"),
            rslice(dev("b-0"), name="s-b", pool="b", nodeName="node-b"),
            rslice(dev("net-0"), name="s-all", pool="net", allNodes=True),
            rslice(
                dev("sel-0"),
                name="s-sel",
                pool="sel",
                nodeSelector={
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": ["node-a"],
                                }
                            ]
                        }
                    ]
                },
            ),
            claim("c", exactly("all", allocationMode="All")),
        ],
        {"c": gets(("all", "a-0"), ("all", "net-0"), ("all", "sel-0"))},
    ),
    Case(
        "node-labels-from-node-object",
        "API ResourceSliceSpec.nodeSelector is a core NodeSelector, matched against the node's labels.",
        [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "node-a", "labels": {"topology.kubernetes.io/zone": "z1"}},
            },
            rslice(
                dev("z1-0"),
                name="s-z1",
                pool="z1",
                nodeSelector={
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "topology.kubernetes.io/zone",
                                    "operator": "In",
                                    "values": ["z1"],
                                }
                            ]
                        }
                    ]
                },
            ),
            rslice(
                dev("z2-0"),
                name="s-z2",
                pool="z2",
                nodeSelector={
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "topology.kubernetes.io/zone",
                                    "operator": "In",
                                    "values": ["z2"],
                                }
                            ]
                        }
                    ]
                },
            ),
            claim("c", exactly("all", allocationMode="All")),
        ],
        {"c": gets(("all", "z1-0"))},
    ),
    Case(
        "per-device-node-selection",
        "API ResourceSliceSpec.perDeviceNodeSelection: each device says its node with nodeName/allNodes.",
        [
            rslice(
                dev("here", nodeName="node-a"),
                dev("there", nodeName="node-b"),
                perDeviceNodeSelection=True,
            ),
            claim("c", exactly("all", allocationMode="All")),
        ],
        {"c": gets(("all", "here"))},
    ),
    # ----- firstAvailable (KEP-4816) -----
    Case(
        "first-available-falls-back",
        "KEP-4816: subrequests are tried in order and the first that can be satisfied is used; "
        "the result names it as <request>/<subrequest>.",
        [rslice(dev("pci-0")), claim("c", first("gpu", sub("two", count=2), sub("one", count=1)))],
        {"c": gets(("gpu/one", "pci-0"))},
    ),
    Case(
        "first-available-prefers-first",
        "KEP-4816: when the first subrequest can be satisfied, it is the one used.",
        [THREE_PCI, claim("c", first("gpu", sub("two", count=2), sub("one", count=1)))],
        {"c": GetsDevices(frozenset({"pci-0", "pci-1"}))},
    ),
    Case(
        "first-available-backtracks-for-a-later-request",
        "KEP-4816 'Design Details': if a later request cannot be satisfied with the subrequest "
        "chosen, the allocator tries the next subrequest: gpu must settle for numa 1 so that "
        "local can have the only numa-0 function.",
        [
            rslice(dev("pci-0", numa=0), dev("pci-1", numa=1)),
            claim(
                "c",
                first(
                    "gpu",
                    sub("near", selectors=['device.attributes["hostdev.k8s.io"].numaNode == 0']),
                    sub("far", selectors=['device.attributes["hostdev.k8s.io"].numaNode == 1']),
                ),
                exactly("local", selectors=['device.attributes["hostdev.k8s.io"].numaNode == 0']),
            ),
        ],
        {"c": gets(("gpu/far", "pci-1"), ("local", "pci-0"))},
    ),
    Case(
        "first-available-none-satisfiable",
        "KEP-4816: if no subrequest can be satisfied the claim cannot be allocated.",
        [rslice(dev("pci-0")), claim("c", first("gpu", sub("usb", USB), sub("two", count=2)))],
        {"c": Fails("no subrequest can be satisfied")},
    ),
    # ----- matchAttribute constraints (KEP-4381, API DeviceConstraint) -----
    Case(
        "match-attribute-over-all-requests-backtracks",
        "API DeviceConstraint.matchAttribute: all devices must have the attribute with the same "
        "value; without `requests` it applies to every request. Only numa 1 has two functions.",
        [
            THREE_PCI,
            claim(
                "c",
                exactly("a"),
                exactly("b"),
                constraints=[{"matchAttribute": "hostdev.k8s.io/numaNode"}],
            ),
        ],
        {"c": GetsDevices(frozenset({"pci-1", "pci-2"}))},
    ),
    Case(
        "match-attribute-within-one-request",
        "API DeviceConstraint: the constraint covers every device of the listed requests, also two "
        "devices of one request with count 2.",
        [
            THREE_PCI,
            claim(
                "c",
                exactly("pair", count=2),
                constraints=[{"requests": ["pair"], "matchAttribute": "hostdev.k8s.io/numaNode"}],
            ),
        ],
        {"c": gets(("pair", "pci-1"), ("pair", "pci-2"))},
    ),
    Case(
        "match-attribute-only-for-listed-requests",
        "API DeviceConstraint.requests: 'the constraint applies to the requests listed'; c is "
        "free, so a and b share numa 1 and c gets numa 0.",
        [
            THREE_PCI,
            claim(
                "c",
                exactly("a", selectors=['device.attributes["hostdev.k8s.io"].numaNode == 1']),
                exactly("b"),
                exactly("c"),
                constraints=[{"requests": ["a", "b"], "matchAttribute": "hostdev.k8s.io/numaNode"}],
            ),
        ],
        {"c": gets(("a", "pci-1"), ("b", "pci-2"), ("c", "pci-0"))},
    ),
    Case(
        "match-attribute-missing-attribute-unsatisfiable",
        "API DeviceConstraint.matchAttribute: 'all devices in question have this attribute' — a "
        "device without it cannot be in the set.",
        [
            rslice(dev("pci-0", numa=None), dev("pci-1", numa=None)),
            claim(
                "c",
                exactly("a"),
                exactly("b"),
                constraints=[{"matchAttribute": "hostdev.k8s.io/numaNode"}],
            ),
        ],
        {"c": Fails("matchAttribute hostdev.k8s.io/numaNode")},
    ),
    Case(
        "match-attribute-names-a-first-available-request",
        "API DeviceConstraint.requests: 'If just the main request is given, the constraint applies "
        "to all subrequests' — gpu/one must share local's numa node.",
        [
            THREE_PCI,
            claim(
                "c",
                exactly("local", selectors=['device.attributes["hostdev.k8s.io"].numaNode == 0']),
                first("gpu", sub("one")),
                constraints=[
                    {"requests": ["local", "gpu"], "matchAttribute": "hostdev.k8s.io/numaNode"}
                ],
            ),
        ],
        {"c": Fails("matchAttribute hostdev.k8s.io/numaNode")},
    ),
    # ----- shared counters (KEP-4815) -----
    Case(
        "counters-limit-partitions",
        "KEP-4815: devices consume counters of a counter set in a sharedCounters slice of the same "
        "pool, and the sum over allocated devices must not exceed the counter: 8Gi holds two 4Gi parts.",
        [
            rslice(name="s-counters", shared=[counter_set("gpu-0", memory="8Gi")], count=2),
            rslice(
                dev("part-0", consumesCounters=consumes("gpu-0", memory="4Gi")),
                dev("part-1", consumesCounters=consumes("gpu-0", memory="4Gi")),
                dev("part-2", consumesCounters=consumes("gpu-0", memory="4Gi")),
                name="s-devices",
                count=2,
            ),
            claim("one", exactly("f")),
            claim("two", exactly("f")),
            claim("three", exactly("f")),
        ],
        {
            "one": gets(("f", "part-0")),
            "two": gets(("f", "part-1")),
            "three": Fails("counter gpu-0/memory exhausted"),
        },
    ),
    Case(
        "counters-whole-device-after-a-partition",
        "KEP-4815 'MIG use-case': the whole GPU consumes all of the memory counter, so it is no "
        "longer allocatable once a partition is.",
        [
            rslice(name="s-counters", shared=[counter_set("gpu-0", memory="8Gi")], count=2),
            rslice(
                dev(
                    "part-0",
                    attributes={"kind": {"string": "part"}},
                    consumesCounters=consumes("gpu-0", memory="4Gi"),
                ),
                dev(
                    "whole",
                    attributes={"kind": {"string": "whole"}},
                    consumesCounters=consumes("gpu-0", memory="8Gi"),
                ),
                name="s-devices",
                count=2,
            ),
            claim(
                "part",
                exactly("f", selectors=['device.attributes["hostdev.k8s.io"].kind == "part"']),
            ),
            claim(
                "whole",
                exactly("f", selectors=['device.attributes["hostdev.k8s.io"].kind == "whole"']),
            ),
        ],
        {"part": gets(("f", "part-0")), "whole": Fails("counter gpu-0/memory exhausted")},
    ),
    Case(
        "counters-across-requests-of-one-claim",
        "KEP-4815: the counters bound the devices of one claim too: a whole GPU and a partition "
        "of it never fit together.",
        [
            rslice(name="s-counters", shared=[counter_set("gpu-0", memory="8Gi")], count=2),
            rslice(
                dev(
                    "part-0",
                    attributes={"kind": {"string": "part"}},
                    consumesCounters=consumes("gpu-0", memory="4Gi"),
                ),
                dev(
                    "whole",
                    attributes={"kind": {"string": "whole"}},
                    consumesCounters=consumes("gpu-0", memory="8Gi"),
                ),
                name="s-devices",
                count=2,
            ),
            claim(
                "c",
                exactly("w", selectors=['device.attributes["hostdev.k8s.io"].kind == "whole"']),
                exactly("p", selectors=['device.attributes["hostdev.k8s.io"].kind == "part"']),
            ),
        ],
        {"c": Fails("each request can be satisfied alone")},
    ),
    # ----- allowMultipleAllocations, consumable capacity (KEP-5075) -----
    Case(
        "multi-allocation-device-serves-many-claims",
        "KEP-5075: a device with allowMultipleAllocations can be allocated to several claims at once.",
        [
            rslice(dev("shared-0", allowMultipleAllocations=True)),
            claim("one", exactly("f")),
            claim("two", exactly("f")),
            claim("three", exactly("f")),
        ],
        {
            "one": gets(("f", "shared-0")),
            "two": gets(("f", "shared-0")),
            "three": gets(("f", "shared-0")),
        },
    ),
    Case(
        "multi-allocation-capacity-is-consumed",
        "KEP-5075 / API DeviceCapacity.requestPolicy: 'If unset, requests can consume any amount "
        "of capacity, as long as the total consumed across all allocations does not exceed the "
        "device's defined capacity': 4G + 4G fit in 10G, a third 4G does not.",
        [
            rslice(
                dev(
                    "nic-0", allowMultipleAllocations=True, capacity={"bandwidth": {"value": "10G"}}
                )
            ),
            claim("one", exactly("f", capacity={"requests": {"bandwidth": "4G"}})),
            claim("two", exactly("f", capacity={"requests": {"bandwidth": "4G"}})),
            claim("three", exactly("f", capacity={"requests": {"bandwidth": "4G"}})),
        ],
        {
            "one": gets(("f", "nic-0")),
            "two": gets(("f", "nic-0")),
            "three": Fails("capacity hostdev.k8s.io/bandwidth exhausted"),
        },
    ),
    Case(
        "multi-allocation-unrequested-capacity-takes-all",
        "API DeviceCapacity.requestPolicy: 'If request is also unset, default is the full capacity "
        "value' — a claim without a capacity request leaves nothing for the next one.",
        [
            rslice(
                dev(
                    "nic-0", allowMultipleAllocations=True, capacity={"bandwidth": {"value": "10G"}}
                )
            ),
            claim("greedy", exactly("f")),
            claim("next", exactly("f", capacity={"requests": {"bandwidth": "1G"}})),
        ],
        {
            "greedy": gets(("f", "nic-0")),
            "next": Fails("capacity hostdev.k8s.io/bandwidth exhausted"),
        },
    ),
    Case(
        "exclusive-device-with-too-little-capacity",
        "KEP-5075: capacity.requests of a request must fit the device's capacity; a 16G request "
        "skips the 10G device for the 40G one.",
        [
            rslice(
                dev("nic-0", capacity={"bandwidth": {"value": "10G"}}),
                dev("nic-1", capacity={"bandwidth": {"value": "40G"}}),
            ),
            claim("c", exactly("f", capacity={"requests": {"bandwidth": "16G"}})),
        ],
        {"c": gets(("f", "nic-1"))},
    ),
    # ----- adminAccess (KEP-5018) -----
    Case(
        "admin-access-sees-held-device",
        "KEP-5018: a request with adminAccess gets devices even if they are allocated, and its "
        "allocation does not count as allocated: the normal claim after it still gets pci-0.",
        [
            namespace("ops", admin=True),
            rslice(dev("pci-0")),
            claim("user", exactly("f")),
            claim("monitor", exactly("f", adminAccess=True), ns="ops"),
            claim("user2", exactly("f")),
        ],
        {
            "user": gets(("f", "pci-0")),
            "monitor": Gets((("f", "pci-0"),), admin=True),
            "user2": Fails("allocated to an earlier claim"),
        },
    ),
    Case(
        "admin-access-does-not-hold",
        "KEP-5018: devices allocated with adminAccess are not considered allocated, so a later "
        "normal claim can have the device.",
        [
            namespace("ops", admin=True),
            rslice(dev("pci-0")),
            claim("monitor", exactly("f", adminAccess=True), ns="ops"),
            claim("user", exactly("f")),
        ],
        {"monitor": Gets((("f", "pci-0"),), admin=True), "user": gets(("f", "pci-0"))},
    ),
    Case(
        "admin-access-needs-labelled-namespace",
        "KEP-5018 / DRA docs 'Admin access': only namespaces labelled "
        "resource.kubernetes.io/admin-access=true may create claims with adminAccess.",
        [
            namespace("team", admin=False),
            rslice(dev("pci-0")),
            claim("c", exactly("f", adminAccess=True), ns="team"),
        ],
        {"c": Fails("resource.kubernetes.io/admin-access")},
    ),
    # ----- taints and tolerations (KEP-5055) -----
    Case(
        "taint-noschedule-steers-to-untainted",
        "KEP-5055: a device with a NoSchedule taint is not allocated to a claim that does not "
        "tolerate it.",
        [
            rslice(
                dev("pci-0", taints=[{"key": "broken", "value": "ecc", "effect": "NoSchedule"}]),
                dev("pci-1"),
            ),
            claim("c", exactly("f")),
        ],
        {"c": gets(("f", "pci-1"))},
    ),
    Case(
        "taint-noexecute-not-tolerated",
        "KEP-5055: NoExecute also keeps new claims off the device; with only tainted devices "
        "the claim fails and says which taint.",
        [
            rslice(dev("pci-0", taints=[{"key": "maintenance", "effect": "NoExecute"}])),
            claim("c", exactly("f")),
        ],
        {"c": Fails("taint not tolerated: maintenance=:NoExecute")},
    ),
    Case(
        "taint-effect-none-does-not-block",
        "KEP-5055 DeviceTaint.effect: only NoSchedule and NoExecute keep claims off a device; "
        "a taint with effect None is informational.",
        [
            rslice(dev("pci-0", taints=[{"key": "degraded", "effect": "None"}])),
            claim("c", exactly("f")),
        ],
        {"c": gets(("f", "pci-0"))},
    ),
    Case(
        "toleration-equal-matches-key-and-value",
        "KEP-5055 DeviceToleration: operator Equal (the default) tolerates a taint with the same "
        "key, value and effect.",
        [
            rslice(
                dev("pci-0", taints=[{"key": "broken", "value": "ecc", "effect": "NoSchedule"}])
            ),
            claim(
                "c",
                exactly(
                    "f", tolerations=[{"key": "broken", "value": "ecc", "effect": "NoSchedule"}]
                ),
            ),
        ],
        {"c": gets(("f", "pci-0"))},
    ),
    Case(
        "toleration-equal-other-value-does-not-match",
        "KEP-5055 DeviceToleration: Equal needs the values to be equal.",
        [
            rslice(
                dev("pci-0", taints=[{"key": "broken", "value": "ecc", "effect": "NoSchedule"}])
            ),
            claim(
                "c",
                exactly("f", tolerations=[{"key": "broken", "value": "fan", "operator": "Equal"}]),
            ),
        ],
        {"c": Fails("taint not tolerated")},
    ),
    Case(
        "toleration-exists-empty-key-tolerates-all",
        "KEP-5055 DeviceToleration: 'If the key is empty, operator must be Exists; this "
        "combination means to match all values and all keys'; empty effect matches all effects.",
        [
            rslice(
                dev(
                    "pci-0",
                    taints=[
                        {"key": "a", "value": "1", "effect": "NoSchedule"},
                        {"key": "b", "effect": "NoExecute"},
                    ],
                )
            ),
            claim("c", exactly("f", tolerations=[{"operator": "Exists"}])),
        ],
        {"c": gets(("f", "pci-0"))},
    ),
    Case(
        "toleration-effect-must-match",
        "KEP-5055 DeviceToleration.effect: when set, only taints with that effect are tolerated.",
        [
            rslice(dev("pci-0", taints=[{"key": "maintenance", "effect": "NoExecute"}])),
            claim(
                "c",
                exactly(
                    "f",
                    tolerations=[
                        {"key": "maintenance", "operator": "Exists", "effect": "NoSchedule"}
                    ],
                ),
            ),
        ],
        {"c": Fails("taint not tolerated")},
    ),
    Case(
        "toleration-in-first-available-subrequest",
        "KEP-5055 / API DeviceSubRequest.tolerations: subrequests carry their own tolerations.",
        [
            rslice(dev("pci-0", taints=[{"key": "k", "effect": "NoSchedule"}])),
            claim(
                "c",
                first(
                    "gpu",
                    sub("strict"),
                    sub("lenient", tolerations=[{"key": "k", "operator": "Exists"}]),
                ),
            ),
        ],
        {"c": gets(("gpu/lenient", "pci-0"))},
    ),
    # ----- backtracking across requests (KEP-4381) -----
    Case(
        "backtracking-count-across-requests",
        "KEP-4381 'Scheduling': the allocator must find a set of devices for all requests; the "
        "first choice for `any` (numa 0) leaves nothing for `local`, so it takes numa 1 instead.",
        [
            rslice(dev("pci-0", numa=0), dev("pci-1", numa=1)),
            claim(
                "c",
                exactly("any"),
                exactly("local", selectors=['device.attributes["hostdev.k8s.io"].numaNode == 0']),
            ),
        ],
        {"c": gets(("any", "pci-1"), ("local", "pci-0"))},
    ),
    # ----- pods and templates (DRA docs 'ResourceClaims and ResourceClaimTemplates') -----
    Case(
        "pods-with-a-template-get-a-claim-each",
        "DRA docs: for a resourceClaimTemplateName entry a ResourceClaim is generated per pod, so "
        "two pods get two claims and two devices (named <pod>-<entry> here).",
        [
            rslice(dev("pci-0"), dev("pci-1")),
            template("one-pci", exactly("f")),
            pod("p1", gpu={"resourceClaimTemplateName": "one-pci"}),
            pod("p2", gpu={"resourceClaimTemplateName": "one-pci"}),
        ],
        {"p1-gpu": GetsDevices(frozenset({"pci-0"})), "p2-gpu": GetsDevices(frozenset({"pci-1"}))},
    ),
    Case(
        "pods-sharing-a-claim-allocate-it-once",
        "DRA docs: pods referring to the same ResourceClaim by resourceClaimName share its devices.",
        [
            rslice(dev("pci-0")),
            claim("shared", exactly("f")),
            pod("p1", gpu={"resourceClaimName": "shared"}),
            pod("p2", gpu={"resourceClaimName": "shared"}),
        ],
        {"shared": gets(("f", "pci-0"))},
    ),
]


def _outcomes(case: Case) -> dict[str, ClaimOutcome]:
    inp = load_objects([*PROJECT_CLASSES, *case.extra_classes, *case.docs])
    outcomes = simulate(inp, node=case.node)
    return {o.name: o for o in outcomes}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_claim_gets_the_allocation_the_docs_describe(case: Case) -> None:
    outcomes = _outcomes(case)
    assert set(outcomes) == set(case.expect), case.why
    for name, expectation in case.expect.items():
        outcome = outcomes[name]
        if isinstance(expectation, Fails):
            assert outcome.devices == [], case.why
            assert outcome.error is not None, case.why
            assert expectation.reason in outcome.error, (case.why, outcome.error)
            continue
        assert outcome.error is None, (case.why, outcome.error)
        assert all(d.driver == DRIVER for d in outcome.devices)
        if isinstance(expectation, Gets):
            got = tuple((d.request, d.device) for d in outcome.devices)
            assert got == expectation.pairs, case.why
            assert all(d.admin_access == expectation.admin for d in outcome.devices), case.why
        else:
            assert {d.device for d in outcome.devices} == expectation.devices, case.why
            assert len(outcome.devices) == len(expectation.devices), case.why


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


def test_consumed_capacity_rounds_up_to_a_valid_value() -> None:
    """API CapacityRequestPolicy.validValues: 'the scheduler calculates the smallest valid value
    that is greater than or equal to the request'; the result's consumedCapacity says so."""
    policy = {"default": "1Gi", "validValues": ["1Gi", "2Gi", "4Gi"]}
    docs = [
        rslice(
            dev(
                "mem-0",
                allowMultipleAllocations=True,
                capacity={"memory": {"value": "8Gi", "requestPolicy": policy}},
            )
        ),
        claim("three", exactly("f", capacity={"requests": {"memory": "3Gi"}})),
        claim("default", exactly("f")),
        claim("too-much", exactly("f", capacity={"requests": {"memory": "4Gi"}})),
    ]
    outcomes = {o.name: o for o in simulate(load_objects([*PROJECT_CLASSES, *docs]), node=NODE)}
    consumed = outcomes["three"].devices[0].consumed_capacity
    assert parse_quantity(consumed["hostdev.k8s.io/memory"]) == 4 * 2**30
    # No request: the policy's default (1Gi); 4Gi + 1Gi leave 3Gi, too little for 4Gi.
    assert (
        parse_quantity(outcomes["default"].devices[0].consumed_capacity["hostdev.k8s.io/memory"])
        == 2**30
    )
    assert outcomes["too-much"].error is not None
    assert "exhausted" in outcomes["too-much"].error


def test_consumed_capacity_rounds_up_to_a_step() -> None:
    """API CapacityRequestPolicyRange.step: the consumed amount is rounded up to min + n*step."""
    policy = {"default": "1Gi", "validRange": {"min": "1Gi", "max": "4Gi", "step": "1Gi"}}
    docs = [
        rslice(
            dev(
                "mem-0",
                allowMultipleAllocations=True,
                capacity={"memory": {"value": "8Gi", "requestPolicy": policy}},
            )
        ),
        claim("odd", exactly("f", capacity={"requests": {"memory": "1500Mi"}})),
        claim("over-max", exactly("f", capacity={"requests": {"memory": "5Gi"}})),
    ]
    outcomes = {o.name: o for o in simulate(load_objects([*PROJECT_CLASSES, *docs]), node=NODE)}
    assert (
        parse_quantity(outcomes["odd"].devices[0].consumed_capacity["hostdev.k8s.io/memory"])
        == 2 * 2**30
    )
    assert outcomes["over-max"].error is not None
    assert "requestPolicy" in outcomes["over-max"].error


def test_search_effort_is_bounded() -> None:
    """kube-scheduler bounds the allocator's search; an unsatisfiable constraint over many
    devices ends with an error saying the search gave up rather than running on."""
    devices = [dev(f"pci-{i}", numa=None, attributes={"serial": {"int": i}}) for i in range(30)]
    docs = [
        rslice(*devices),
        claim(
            "c",
            exactly("a", count=3),
            exactly("b"),
            constraints=[{"matchAttribute": "hostdev.k8s.io/serial"}],
        ),
    ]
    (outcome,) = simulate(load_objects([*PROJECT_CLASSES, *docs]), node=NODE, max_steps=100)
    assert outcome.error is not None
    assert "gave up after 100 search steps" in outcome.error


def test_fraction_import_keeps_quantities_exact() -> None:
    assert parse_quantity("1.5Gi") == Fraction(3 * 2**29)
