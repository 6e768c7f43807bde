"""ResourceSlice rules beyond the OpenAPI schema (kubelet-protocols.md section 5.2)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from hostdev_testing.apiserver import quantity, rules
from hostdev_testing.apiserver.errors import (
    FieldError,
    duplicate,
    forbidden,
    immutable,
    invalid,
    not_supported,
    required,
    too_long,
    too_many,
)

MAX_DEVICES = 128
MAX_DEVICES_WITH_TAINTS_OR_COUNTERS = 64
MAX_ATTRIBUTES_AND_CAPACITIES = 32
MAX_COUNTER_SETS = 8
MAX_COUNTERS = 32
MAX_CONSUMPTIONS = 2
MAX_TAINTS = 16
MAX_BINDING_CONDITIONS = 4
MAX_VALUE_LENGTH = 64
TAINT_EFFECTS = ["NoExecute", "NoSchedule", "None"]
NODE_SELECTOR_OPERATORS = ["DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn"]

_ID = r"(0|[1-9]\d*)"
_PRE = r"(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
_BUILD = r"[0-9a-zA-Z-]+"
SEMVER = re.compile(rf"{_ID}\.{_ID}\.{_ID}(-{_PRE}(\.{_PRE})*)?(\+{_BUILD}(\.{_BUILD})*)?")
_ONE_OF = (
    "exactly one of `nodeName`, `nodeSelector`, `allNodes`, `perDeviceNodeSelection` is required"
)
_PER_DEVICE = (
    "exactly one of `nodeName`, `nodeSelector`, or `allNodes` is required when "
    "`perDeviceNodeSelection` is set to true in the ResourceSlice spec"
)


def unique_list(
    path: str,
    items: Any,
    limit: int,
    each: Callable[[str, Any], list[FieldError]],
    key: Callable[[Any], Any] | None = None,
) -> list[FieldError]:
    """A bounded list whose entries are checked and, given `key`, unique; too many stops there."""
    items = items or []
    if limit >= 0 and len(items) > limit:
        return [too_many(path, len(items), limit)]
    errors: list[FieldError] = []
    seen: set[Any] = set()
    for i, item in enumerate(items):
        errors += each(f"{path}[{i}]", item)
        if key is not None:
            k = key(item)
            if k in seen:
                errors.append(duplicate(f"{path}[{i}]", k))
            seen.add(k)
    return errors


def pool_name(path: str, name: str) -> list[FieldError]:
    if not name:
        return [required(path)]
    errors = [too_long(path, 253)] if len(name) > 253 else []
    for part in name.split("/"):
        errors += rules.check(path, part, rules.dns_subdomain_errors(part))
    return errors


def node_name(path: str, value: Any) -> list[FieldError]:
    return rules.check(path, value, rules.dns_subdomain_errors(value))


def qualified_name(path: str, name: str) -> list[FieldError]:
    """Attribute and capacity names: a C identifier, optionally behind `<domain>/`."""
    domain, slash, ident = name.partition("/")
    if not slash:
        domain, ident = "", name
    errors: list[FieldError] = []
    if slash and not domain:
        errors.append(invalid(path, "", "the domain must not be empty"))
    elif slash:
        errors += rules.driver_name(path, domain)
    if slash and not ident:
        return [*errors, invalid(path, "", "the name must not be empty")]
    if len(ident) > 32:
        errors.append(too_long(path, 32))
    if not rules.c_identifier_ok(ident):
        errors.append(invalid(path, ident, rules.C_IDENTIFIER_MSG))
    return errors


def node_selector(path: str, selector: Any) -> list[FieldError]:
    errors: list[FieldError] = []
    for t, term in enumerate(selector.get("nodeSelectorTerms") or []):
        for kind in ("matchExpressions", "matchFields"):
            for r, req in enumerate(term.get(kind) or []):
                where = f"{path}.nodeSelectorTerms[{t}].{kind}[{r}]"
                if req.get("operator") not in NODE_SELECTOR_OPERATORS:
                    errors.append(
                        not_supported(
                            f"{where}.operator", req.get("operator", ""), NODE_SELECTOR_OPERATORS
                        )
                    )
                if not req.get("key"):
                    errors.append(required(f"{where}.key"))
    return errors


def _placement(
    path: str, spec: dict[str, Any], *, with_per_device: bool
) -> tuple[list[str], list[FieldError]]:
    chosen: list[str] = []
    errors: list[FieldError] = []
    if "nodeName" in spec:
        if spec["nodeName"]:
            chosen.append("`nodeName`")
            errors += node_name(f"{path}.nodeName", spec["nodeName"])
        else:
            detail = (
                "must be either unset or set to a non-empty string"
                if with_per_device
                else "must not be empty"
            )
            errors.append(invalid(f"{path}.nodeName", "", detail))
    if "nodeSelector" in spec:
        chosen.append("`nodeSelector`")
        errors += node_selector(f"{path}.nodeSelector", spec["nodeSelector"])
    names = ("allNodes", "perDeviceNodeSelection") if with_per_device else ("allNodes",)
    for name in names:
        if name in spec:
            if spec[name] is True:
                chosen.append(f"`{name}`")
            else:
                errors.append(
                    invalid(f"{path}.{name}", spec[name], "must be either unset or set to true")
                )
    return chosen, errors


def _slice_placement(spec: dict[str, Any]) -> list[FieldError]:
    chosen, errors = _placement("spec", spec, with_per_device=True)
    terms = (spec.get("nodeSelector") or {}).get("nodeSelectorTerms") or []
    if "nodeSelector" in spec and len(terms) != 1:
        path = "spec.nodeSelector.nodeSelectorTerms"
        errors.append(invalid(path, terms, "must have exactly one node selector term"))
    if not chosen:
        errors.append(required("spec", _ONE_OF))
    elif len(chosen) > 1:
        errors.append(
            invalid(
                "spec", "{" + ", ".join(chosen) + "}", _ONE_OF + ", but multiple fields are set"
            )
        )
    return errors


def _device_placement(path: str, device: dict[str, Any], per_device: bool) -> list[FieldError]:
    own = any(k in device for k in ("nodeName", "nodeSelector", "allNodes"))
    if not per_device:
        if not own:
            return []
        detail = (
            "`nodeName`, `nodeSelector` and `allNodes` can only be set if "
            "`perDeviceNodeSelection` is set to true in the ResourceSlice spec"
        )
        return [invalid(path, None, detail)]
    chosen, errors = _placement(path, device, with_per_device=False)
    if not chosen:
        errors.append(required(path, _PER_DEVICE))
    elif len(chosen) > 1:
        errors.append(invalid(path, "{" + ", ".join(chosen) + "}", _PER_DEVICE))
    return errors


def attribute(path: str, value: dict[str, Any]) -> list[FieldError]:
    kinds = [k for k in ("bool", "int", "string", "version") if k in value]
    errors: list[FieldError] = []
    if len(kinds) != 1:
        errors.append(invalid(path, value if kinds else "", "exactly one value must be specified"))
    if isinstance(value.get("string"), str) and len(value["string"]) > MAX_VALUE_LENGTH:
        errors.append(too_long(f"{path}.string", MAX_VALUE_LENGTH))
    version = value.get("version")
    if isinstance(version, str):
        if not SEMVER.fullmatch(version):
            errors.append(
                invalid(
                    f"{path}.version",
                    version,
                    "must be a string compatible with semver.org spec 2.0.0",
                )
            )
        if len(version) > MAX_VALUE_LENGTH:
            errors.append(too_long(f"{path}.version", MAX_VALUE_LENGTH))
    return errors


def _mapping(
    path: str, mapping: Any, each: Callable[[str, str, Any], list[FieldError]]
) -> list[FieldError]:
    errors: list[FieldError] = []
    for key, value in (mapping or {}).items():
        errors += each(f"{path}[{key}]", key, value)
    return errors


def _counters(path: str, counters: Any) -> list[FieldError]:
    if not counters:
        return [required(path)]
    if len(counters) > MAX_COUNTERS:
        return [too_many(path, len(counters), MAX_COUNTERS)]
    return _mapping(path, counters, lambda p, k, _v: rules.dns_label(p, k))


def _consumption(path: str, item: dict[str, Any]) -> list[FieldError]:
    errors = rules.dns_label(f"{path}.counterSet", item.get("counterSet", ""))
    return errors + _counters(f"{path}.counters", item.get("counters"))


def taint(path: str, item: dict[str, Any]) -> list[FieldError]:
    key = item.get("key", "")
    errors = (
        [required(f"{path}.key")]
        if not key
        else rules.check(f"{path}.key", key, rules.qualified_name_errors(key))
    )
    if item.get("value"):
        errors += rules.check(
            f"{path}.value", item["value"], rules.label_value_errors(item["value"])
        )
    effect = item.get("effect", "")
    if not effect:
        errors.append(required(f"{path}.effect"))
    elif effect not in TAINT_EFFECTS:
        errors.append(not_supported(f"{path}.effect", effect, TAINT_EFFECTS))
    return errors


def binding_conditions(path: str, item: dict[str, Any]) -> list[FieldError]:
    ok = item.get("bindingConditions") or []
    bad = item.get("bindingFailureConditions") or []
    errors: list[FieldError] = []
    for name, values in (("bindingConditions", ok), ("bindingFailureConditions", bad)):
        errors += unique_list(
            f"{path}.{name}",
            values,
            MAX_BINDING_CONDITIONS,
            lambda p, v: rules.check(p, v, rules.qualified_name_errors(v)),
            key=lambda v: v,
        )
    for i, value in enumerate(bad):
        if value in ok:
            detail = "bindingFailureConditions must not overlap with bindingConditions"
            errors.append(invalid(f"{path}.bindingFailureConditions[{i}]", value, detail))
    if bool(ok) != bool(bad):
        name, missing = ("bindingFailureConditions", bad) if ok else ("bindingConditions", ok)
        other = "bindingConditions" if ok else "bindingFailureConditions"
        errors.append(invalid(f"{path}.{name}", missing, f"{name} are required to use {other}"))
    return errors


def device(path: str, item: dict[str, Any], per_device: bool) -> list[FieldError]:
    errors = rules.dns_label(f"{path}.name", item.get("name", ""))
    attributes, capacity = item.get("attributes") or {}, item.get("capacity") or {}
    if len(attributes) + len(capacity) > MAX_ATTRIBUTES_AND_CAPACITIES:
        count = len(attributes) + len(capacity)
        detail = f"the total number of attributes and capacities must not exceed {MAX_ATTRIBUTES_AND_CAPACITIES}"
        errors.append(invalid(path, count, detail))
    errors += _mapping(
        f"{path}.attributes", attributes, lambda p, k, v: qualified_name(p, k) + attribute(p, v)
    )
    multi = item.get("allowMultipleAllocations") is True
    errors += _mapping(
        f"{path}.capacity", capacity, lambda p, k, v: qualified_name(p, k) + _capacity(p, v, multi)
    )
    errors += unique_list(f"{path}.taints", item.get("taints"), MAX_TAINTS, taint)
    errors += unique_list(
        f"{path}.consumesCounters",
        item.get("consumesCounters"),
        MAX_CONSUMPTIONS,
        _consumption,
        key=lambda c: c.get("counterSet", ""),
    )
    errors += _device_placement(path, item, per_device)
    return errors + binding_conditions(path, item)


def _capacity(path: str, value: dict[str, Any], multi: bool) -> list[FieldError]:
    if "requestPolicy" in value and not multi:
        return [forbidden(f"{path}.requestPolicy", "allowMultipleAllocations must be true")]
    policy = value.get("requestPolicy")
    if not isinstance(policy, dict):
        return []
    return _request_policy(f"{path}.requestPolicy", policy, quantity.value(value.get("value")))


MAX_VALID_VALUES = 10


def _request_policy(path: str, policy: dict[str, Any], total: Decimal | None) -> list[FieldError]:
    """KEP-5075 request policies as kube-apiserver checks them: one of validValues and
    validRange, a default when either is set, and their bounds within the capacity."""
    valid_range, valid_values = policy.get("validRange"), policy.get("validValues")
    if valid_values and valid_range is not None:
        detail = 'exactly one policy can be specified, cannot specify "validValues" and "validRange" at the same time'
        return [forbidden(path, detail)]
    if not valid_values and valid_range is None:
        return []
    kind = "validValues" if valid_values else "validRange"
    default = quantity.value(policy.get("default"))
    if "default" not in policy:
        return [required(f"{path}.default", f"required when {kind} is defined")]
    if default is None or total is None:
        return []  # not a quantity: the schema check says so
    if isinstance(valid_values, list):
        return _valid_values(f"{path}.validValues", valid_values, default, total)
    if isinstance(valid_range, dict):
        return _valid_range(f"{path}.validRange", valid_range, default, total)
    return []


def _valid_values(
    path: str, items: list[Any], default: Decimal, total: Decimal
) -> list[FieldError]:
    if len(items) > MAX_VALID_VALUES:
        return [too_many(path, len(items), MAX_VALID_VALUES)]
    numbers = [quantity.value(v) for v in items]
    errors: list[FieldError] = []
    for index in range(1, len(numbers)):
        before, after = numbers[index - 1], numbers[index]
        if before is not None and after is not None and before > after:
            errors.append(
                invalid(
                    f"{path}[{index}]", items[index], "values must be sorted in ascending order"
                )
            )
    seen: set[Decimal] = set()
    for index, number in enumerate(numbers):
        if number is None:
            continue
        if number > total:
            errors.append(
                invalid(
                    f"{path}[{index}]",
                    items[index],
                    f"option is larger than capacity value: {total}",
                )
            )
        if number in seen:
            errors.append(duplicate(f"{path}[{index}]", items[index]))
        seen.add(number)
    if default not in seen:
        errors.append(
            invalid(path, str(default), "default value is not valid according to the requestPolicy")
        )
    return errors


def _valid_range(
    path: str, item: dict[str, Any], default: Decimal, total: Decimal
) -> list[FieldError]:
    low, high = quantity.value(item.get("min")), quantity.value(item.get("max"))
    step = quantity.value(item.get("step"))
    if low is None:
        return []  # the schema requires min
    errors: list[FieldError] = []
    if low > total:
        errors.append(
            invalid(f"{path}.min", item["min"], f"min is larger than capacity value: {total}")
        )
    if default < low:
        errors.append(invalid(f"{path}.min", str(default), f"default is less than min: {low}"))
    if high is not None:
        if low > high:
            errors.append(invalid(f"{path}.max", item["min"], f"min is larger than max: {high}"))
        if high > total:
            errors.append(
                invalid(f"{path}.max", item["max"], f"max is larger than capacity value: {total}")
            )
        if default > high:
            errors.append(invalid(f"{path}.max", str(default), f"default is more than max: {high}"))
    if step is not None and step > 0:
        if low + step > total:
            detail = f"one step {low + step} is larger than capacity value: {total}"
            errors.append(invalid(f"{path}.step", item["step"], detail))
        for bound in (default, high):
            if bound is not None and (bound - low) % step != 0:
                detail = f"value is not a multiple of a given step ({step}) from ({low})"
                errors.append(invalid(f"{path}.step", str(bound), detail))
    return errors


def _counter_set(path: str, item: dict[str, Any]) -> list[FieldError]:
    return rules.dns_label(f"{path}.name", item.get("name", "")) + _counters(
        f"{path}.counters", item.get("counters")
    )


def _uses(devices: Iterable[dict[str, Any]], key: str) -> bool:
    return any(d.get(key) for d in devices)


def spec(spec: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    """Validate `spec` of a ResourceSlice; `old` is the stored spec on update."""
    pool = spec.get("pool") or {}
    errors = rules.driver_name("spec.driver", spec.get("driver", ""))
    errors += pool_name("spec.pool.name", pool.get("name", ""))
    if pool.get("resourceSliceCount", 0) <= 0:
        errors.append(
            invalid(
                "spec.pool.resourceSliceCount",
                pool.get("resourceSliceCount", 0),
                "must be greater than zero",
            )
        )
    if pool.get("generation", 0) < 0:
        errors.append(
            invalid(
                "spec.pool.generation", pool["generation"], "must be greater than or equal to zero"
            )
        )
    if old is not None:
        for path, new_value, old_value in (
            ("spec.pool.name", pool.get("name"), (old.get("pool") or {}).get("name")),
            ("spec.driver", spec.get("driver"), old.get("driver")),
            ("spec.nodeName", spec.get("nodeName"), old.get("nodeName")),
        ):
            if new_value != old_value:
                errors.append(immutable(path, new_value))
    errors += _slice_placement(spec)
    if spec.get("sharedCounters") is not None and spec.get("devices") is not None:
        errors.append(invalid("spec", "", "only one of `sharedCounters` or `devices` is allowed"))
    devices = spec.get("devices") or []
    limit = MAX_DEVICES
    if _uses(devices, "taints") or _uses(devices, "consumesCounters"):
        limit = MAX_DEVICES_WITH_TAINTS_OR_COUNTERS
    per_device = spec.get("perDeviceNodeSelection") is True
    errors += unique_list(
        "spec.devices",
        devices,
        limit,
        lambda p, d: device(p, d, per_device),
        key=lambda d: d.get("name", ""),
    )
    errors += unique_list(
        "spec.sharedCounters",
        spec.get("sharedCounters"),
        MAX_COUNTER_SETS,
        _counter_set,
        key=lambda c: c.get("name", ""),
    )
    return errors
