"""The devices a node sees: slices for the node, grouped in pools, newest generation only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .celenv import quantity_value, semver_value
from .errors import SchedulingError
from .model import Object
from .quantity import parse_quantity
from .semver import parse_semver

HOSTNAME_LABEL = "kubernetes.io/hostname"


@dataclass(frozen=True)
class DeviceId:
    driver: str
    pool: str
    device: str

    def __str__(self) -> str:
        return f"{self.driver}/{self.pool}/{self.device}"


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True)
class CapacityPolicy:
    default: Fraction | None
    valid_values: tuple[Fraction, ...]
    minimum: Fraction | None
    maximum: Fraction | None
    step: Fraction | None


@dataclass
class Device:
    id: DeviceId
    # Attributes under their fully qualified names ("domain/id").
    attributes: dict[str, Any]
    capacity: dict[str, Fraction]
    policies: dict[str, CapacityPolicy]
    taints: tuple[Taint, ...]
    # (counter set, counter) -> amount consumed while the device is allocated.
    consumes: dict[tuple[str, str], Fraction]
    multi: bool
    cel_input: dict[str, Any]


@dataclass
class Pool:
    driver: str
    name: str
    generation: int
    incomplete: bool
    devices: list[Device] = field(default_factory=list)
    # Why the pool cannot be used (a device name appears twice), or None.
    invalid: str | None = None
    # (counter set, counter) -> total available.
    counters: dict[tuple[str, str], Fraction] = field(default_factory=dict)


def _labels(node: str, nodes: Mapping[str, Object]) -> dict[str, str]:
    obj = nodes.get(node)
    labels = dict((obj or {}).get("metadata", {}).get("labels") or {})
    labels.setdefault(HOSTNAME_LABEL, node)
    return labels


def _requirement(req: Object, value: str | None) -> bool:
    operator = req.get("operator")
    values = [str(v) for v in req.get("values") or []]
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            have, limit = int(value), int(values[0])
        except ValueError:
            return False
        return have > limit if operator == "Gt" else have < limit
    return False


def node_selector_matches(selector: Object, node: str, labels: Mapping[str, str]) -> bool:
    """A core/v1 NodeSelector: terms are ORed, the requirements of a term ANDed."""
    for term in selector.get("nodeSelectorTerms") or []:
        expressions = term.get("matchExpressions") or []
        fields = term.get("matchFields") or []
        if not expressions and not fields:
            continue  # an empty term matches no node
        if all(_requirement(r, labels.get(str(r.get("key")))) for r in expressions) and all(
            _requirement(r, node if r.get("key") == "metadata.name" else None) for r in fields
        ):
            return True
    return False


def _on_node(spec: Object, node: str, labels: Mapping[str, str]) -> bool:
    if spec.get("nodeName") is not None:
        return bool(spec["nodeName"] == node)
    if spec.get("allNodes"):
        return True
    if spec.get("nodeSelector") is not None:
        return node_selector_matches(spec["nodeSelector"], node, labels)
    return False


def _qualified(name: str, driver: str) -> str:
    return name if "/" in name else f"{driver}/{name}"


def _attribute(value: Any, where: str) -> Any:
    if not isinstance(value, Mapping) or len(value) != 1:
        raise SchedulingError(
            f"{where}: an attribute must have exactly one of int, bool, string, version"
        )
    ((kind, raw),) = value.items()
    if kind == "int" and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if kind == "bool" and isinstance(raw, bool):
        return raw
    if kind == "string" and isinstance(raw, str):
        return raw
    if kind == "version" and isinstance(raw, str) and parse_semver(raw) is not None:
        return semver_value(raw)
    raise SchedulingError(f"{where}: attribute value {dict(value)!r} is not valid")


def _policy(raw: Object | None) -> CapacityPolicy | None:
    if not raw:
        return None
    rng = raw.get("validRange") or {}

    def q(v: Any) -> Fraction | None:
        return None if v is None else parse_quantity(v)

    return CapacityPolicy(
        default=q(raw.get("default")),
        valid_values=tuple(sorted(parse_quantity(v) for v in raw.get("validValues") or [])),
        minimum=q(rng.get("min")),
        maximum=q(rng.get("max")),
        step=q(rng.get("step")),
    )


def _device(raw: Object, driver: str, pool: str, where: str) -> Device:
    name = raw.get("name")
    if not isinstance(name, str):
        raise SchedulingError(f"{where}: a device has no name")
    where = f"{where} device {name}"
    attributes = {
        _qualified(k, driver): _attribute(v, f"{where} attribute {k}")
        for k, v in (raw.get("attributes") or {}).items()
    }
    capacity: dict[str, Fraction] = {}
    policies: dict[str, CapacityPolicy] = {}
    for key, value in (raw.get("capacity") or {}).items():
        if not isinstance(value, Mapping) or "value" not in value:
            raise SchedulingError(f"{where}: capacity {key} has no value")
        capacity[_qualified(key, driver)] = parse_quantity(value["value"])
        policy = _policy(value.get("requestPolicy"))
        if policy is not None:
            policies[_qualified(key, driver)] = policy
    taints = tuple(
        Taint(str(t.get("key", "")), str(t.get("value", "")), str(t.get("effect", "")))
        for t in raw.get("taints") or []
    )
    consumes: dict[tuple[str, str], Fraction] = {}
    for usage in raw.get("consumesCounters") or []:
        for counter, amount in (usage.get("counters") or {}).items():
            key = (str(usage.get("counterSet")), counter)
            consumes[key] = consumes.get(key, Fraction(0)) + parse_quantity(amount["value"])
    multi = raw.get("allowMultipleAllocations") is True
    cel_attributes: dict[str, dict[str, Any]] = {}
    for key, value in attributes.items():
        domain, ident = key.split("/", 1)
        cel_attributes.setdefault(domain, {})[ident] = value
    cel_capacity: dict[str, dict[str, Any]] = {}
    for key, amount in capacity.items():
        domain, ident = key.split("/", 1)
        cel_capacity.setdefault(domain, {})[ident] = quantity_value(amount)
    cel_input = {
        "driver": driver,
        "attributes": cel_attributes,
        "capacity": cel_capacity,
        "allowMultipleAllocations": multi,
    }
    return Device(
        DeviceId(driver, pool, name),
        attributes,
        capacity,
        policies,
        taints,
        consumes,
        multi,
        cel_input,
    )


def gather_pools(slices: Sequence[Object], node: str, nodes: Mapping[str, Object]) -> list[Pool]:
    """The pools a pod on `node` can use, sorted by driver and pool name; devices in slice order.

    As the scheduler does: only slices for the node count (nodeName, allNodes, a matching
    nodeSelector, or perDeviceNodeSelection with devices filtered one by one); of a pool only the
    slices of its highest generation; a pool with fewer slices at that generation than its
    resourceSliceCount is incomplete, and one where a device name repeats is invalid: the
    allocator takes no device from either.
    """
    labels = _labels(node, nodes)
    by_pool: dict[tuple[str, str], list[Object]] = {}
    for obj in slices:
        spec = obj["spec"]
        if not (_on_node(spec, node, labels) or spec.get("perDeviceNodeSelection")):
            continue
        by_pool.setdefault((spec["driver"], spec["pool"]["name"]), []).append(obj)
    pools: list[Pool] = []
    for (driver, name), members in sorted(by_pool.items()):
        newest = max(int(m["spec"]["pool"].get("generation", 0)) for m in members)
        current = sorted(
            (m for m in members if int(m["spec"]["pool"].get("generation", 0)) == newest),
            key=lambda m: str(m["metadata"]["name"]),
        )
        expected = int(current[0]["spec"]["pool"].get("resourceSliceCount", 1))
        pool = Pool(driver, name, newest, incomplete=len(current) != expected)
        for member in current:
            spec = member["spec"]
            where = f"ResourceSlice {member['metadata']['name']}"
            for counter_set in spec.get("sharedCounters") or []:
                for counter, amount in (counter_set.get("counters") or {}).items():
                    pool.counters[(str(counter_set.get("name")), counter)] = parse_quantity(
                        amount["value"]
                    )
            for raw in spec.get("devices") or []:
                if spec.get("perDeviceNodeSelection") and not _on_node(raw, node, labels):
                    continue
                pool.devices.append(_device(raw, driver, name, where))
        names = [d.id.device for d in pool.devices]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            pool.invalid = f"device name {duplicates[0]} appears more than once"
        pools.append(pool)
    return pools
