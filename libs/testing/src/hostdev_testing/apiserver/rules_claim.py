"""ResourceClaim, ResourceClaimTemplate and DeviceClass rules beyond the OpenAPI schema."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from hostdev_testing.apiserver import rules
from hostdev_testing.apiserver.errors import (
    FieldError,
    forbidden,
    immutable,
    invalid,
    not_supported,
    required,
    too_long,
    too_many,
)
from hostdev_testing.apiserver.rules_slice import (
    node_selector,
    pool_name,
    qualified_name,
    unique_list,
)

MAX_REQUESTS = 32
MAX_SUBREQUESTS = 8
MAX_SELECTORS = 32
MAX_CONFIGS = 32
MAX_TOLERATIONS = 16
MAX_RESULTS = 32
MAX_RESERVED_FOR = 256
MAX_CONDITIONS = 8
MAX_RAW_BYTES = 10 * 1024
MAX_CEL_LENGTH = 10 * 1024
ALLOCATION_MODES = ["All", "ExactCount"]
TOLERATION_OPERATORS = ["Equal", "Exists"]
TAINT_EFFECTS = ["NoExecute", "NoSchedule", "None"]
CONFIG_SOURCES = ["FromClaim", "FromClass"]
CONDITION_STATUSES = ["False", "True", "Unknown"]
_REASON = re.compile(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?")
_REF_MSG = "must be the name of a request in the claim or the name of a request and a subrequest separated by '/'"


def default_claim_spec(spec: dict[str, Any]) -> None:
    """Server-side defaults of the v1 API: allocationMode, count and toleration operators."""
    for request in (spec.get("devices") or {}).get("requests") or []:
        for part in [request.get("exactly"), *(request.get("firstAvailable") or [])]:
            if not isinstance(part, dict):
                continue
            part.setdefault("allocationMode", "ExactCount")
            if part["allocationMode"] == "ExactCount" and not part.get("count"):
                part["count"] = 1
            for toleration in part.get("tolerations") or []:
                toleration.setdefault("operator", "Equal")


def _selectors(path: str, selectors: Any) -> list[FieldError]:
    def one(p: str, selector: dict[str, Any]) -> list[FieldError]:
        cel = selector.get("cel")
        if cel is None:
            return [required(f"{p}.cel")]
        expression = cel.get("expression", "")
        if not expression:
            # CEL itself is not compiled here; an empty expression is the one sure failure.
            return [required(f"{p}.cel.expression")]
        return (
            [too_long(f"{p}.cel.expression", MAX_CEL_LENGTH)]
            if len(expression) > MAX_CEL_LENGTH
            else []
        )

    return unique_list(path, selectors, MAX_SELECTORS, one)


def _toleration(path: str, item: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    if item.get("key"):
        errors += rules.check(f"{path}.key", item["key"], rules.qualified_name_errors(item["key"]))
    operator, value = item.get("operator", ""), item.get("value", "")
    if operator == "Exists" and value:
        errors.append(invalid(f"{path}.value", value, "must be empty for operator `Exists`"))
    elif operator == "Equal":
        errors += rules.check(f"{path}.value", value, rules.label_value_errors(value))
    elif not operator:
        errors.append(required(f"{path}.operator"))
    elif operator not in TOLERATION_OPERATORS:
        errors.append(not_supported(f"{path}.operator", operator, TOLERATION_OPERATORS))
    if item.get("effect") and item["effect"] not in TAINT_EFFECTS:
        errors.append(not_supported(f"{path}.effect", item["effect"], TAINT_EFFECTS))
    return errors


def _exact(path: str, item: dict[str, Any]) -> list[FieldError]:
    errors = rules.dns_subdomain(f"{path}.deviceClassName", item.get("deviceClassName", ""))
    errors += _selectors(f"{path}.selectors", item.get("selectors"))
    mode, count = item.get("allocationMode", ""), item.get("count", 0)
    if mode == "All" and count:
        errors.append(
            invalid(f"{path}.count", count, "must not be specified when allocationMode is 'All'")
        )
    elif mode == "ExactCount" and count <= 0:
        errors.append(invalid(f"{path}.count", count, "must be greater than zero"))
    elif mode not in ALLOCATION_MODES:
        errors.append(not_supported(f"{path}.allocationMode", mode, ALLOCATION_MODES))
    return errors + unique_list(
        f"{path}.tolerations", item.get("tolerations"), MAX_TOLERATIONS, _toleration
    )


def _request(path: str, item: dict[str, Any]) -> list[FieldError]:
    errors = rules.dns_label(f"{path}.name", item.get("name", ""))
    exactly, first = item.get("exactly"), item.get("firstAvailable") or []
    if exactly is None and not first:
        return [*errors, required(path, "exactly one of `exactly` or `firstAvailable` is required")]
    if exactly is not None and first:
        detail = (
            "exactly one of `exactly` or `firstAvailable` is required, but multiple fields are set"
        )
        return [*errors, invalid(path, None, detail)]
    if exactly is not None:
        return errors + _exact(f"{path}.exactly", exactly)

    def sub(p: str, s: dict[str, Any]) -> list[FieldError]:
        return rules.dns_label(f"{p}.name", s.get("name", "")) + _exact(p, s)

    return errors + unique_list(
        f"{path}.firstAvailable", first, MAX_SUBREQUESTS, sub, key=lambda s: s.get("name", "")
    )


def _request_names(spec: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for request in (spec.get("devices") or {}).get("requests") or []:
        names.add(request.get("name", ""))
        for sub in request.get("firstAvailable") or []:
            names.add(f"{request.get('name', '')}/{sub.get('name', '')}")
    return names


def _refs(path: str, refs: Any, known: set[str]) -> list[FieldError]:
    def one(p: str, name: str) -> list[FieldError]:
        return [] if name in known else [invalid(p, name, _REF_MSG)]

    return unique_list(path, refs, MAX_REQUESTS, one, key=lambda n: n)


def opaque(path: str, item: dict[str, Any]) -> list[FieldError]:
    config = item.get("opaque")
    if config is None:
        return [required(f"{path}.opaque")]
    errors = rules.driver_name(f"{path}.opaque.driver", config.get("driver", ""))
    return errors + raw_object(f"{path}.opaque.parameters", config.get("parameters"))


def raw_object(path: str, value: Any) -> list[FieldError]:
    if value is None:
        return [required(path)]
    if len(json.dumps(value, separators=(",", ":"))) > MAX_RAW_BYTES:
        return [too_long(path, MAX_RAW_BYTES)]
    if not isinstance(value, dict):
        return [invalid(path, "<value omitted>", "must be a valid JSON object")]
    return []


def claim_spec(path: str, spec: dict[str, Any]) -> list[FieldError]:
    """Validate a claim spec at `path` ("spec", or "spec.spec" inside a template)."""
    devices = spec.get("devices") or {}
    known = _request_names(spec)
    errors = unique_list(
        f"{path}.devices.requests",
        devices.get("requests"),
        MAX_REQUESTS,
        _request,
        key=lambda r: r.get("name", ""),
    )

    def constraint(p: str, item: dict[str, Any]) -> list[FieldError]:
        found = _refs(f"{p}.requests", item.get("requests"), known)
        for key in ("matchAttribute", "distinctAttribute"):
            if key in item:
                name = item[key]
                found += qualified_name(f"{p}.{key}", name)
                if "/" not in name:
                    detail = (
                        "a fully qualified name must be a domain and a name separated by a slash"
                    )
                    found.append(invalid(f"{p}.{key}", name, detail))
                return found
        detail = 'exactly one of "matchAttribute" or "distinctAttribute" is required, but multiple fields are set'
        return [*found, required(p, detail)]

    def config(p: str, item: dict[str, Any]) -> list[FieldError]:
        return _refs(f"{p}.requests", item.get("requests"), known) + opaque(p, item)

    errors += unique_list(
        f"{path}.devices.constraints", devices.get("constraints"), MAX_REQUESTS, constraint
    )
    return errors + unique_list(
        f"{path}.devices.config", devices.get("config"), MAX_CONFIGS, config
    )


def claim_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    return [] if new.get("spec") == old.get("spec") else [immutable("spec", new.get("spec"))]


def device_class_spec(spec: dict[str, Any]) -> list[FieldError]:
    errors = _selectors("spec.selectors", spec.get("selectors"))
    if "extendedResourceName" in spec:
        errors += extended_resource_name("spec.extendedResourceName", spec["extendedResourceName"])
    return errors + unique_list("spec.config", spec.get("config"), MAX_CONFIGS, opaque)


def extended_resource_name(path: str, name: Any) -> list[FieldError]:
    """KEP-5004: a name a pod can put in resources.limits as an extended resource: it has a
    domain, the domain is not kubernetes.io's (those are native resources, the implicit
    `deviceclass.resource.kubernetes.io/<class>` names included), and `requests.<name>`
    is a qualified name (what a ResourceQuota key becomes)."""
    text = name if isinstance(name, str) else ""
    native = "/" not in text or "kubernetes.io/" in text
    if native or text.startswith("requests.") or rules.qualified_name_errors("requests." + text):
        return [invalid(path, name, "must be a valid extended resource name")]
    return []


def template_spec(spec: dict[str, Any]) -> list[FieldError]:
    meta = spec.get("metadata") or {}
    errors: list[FieldError] = []
    for key in ("name", "namespace", "generateName", "uid", "resourceVersion"):
        if meta.get(key):
            errors.append(forbidden(f"spec.metadata.{key}", "not allowed in a template"))
    return errors + claim_spec("spec.spec", spec.get("spec") or {})


def _result_id(item: dict[str, Any]) -> str:
    parts = [item.get("driver", ""), item.get("pool", ""), item.get("device", "")]
    return "/".join(parts + ([item["shareID"]] if item.get("shareID") else []))


def _condition(path: str, item: dict[str, Any]) -> list[FieldError]:
    errors = rules.check(
        f"{path}.type", item.get("type", ""), rules.qualified_name_errors(item.get("type", ""))
    )
    if item.get("status") not in CONDITION_STATUSES:
        errors.append(not_supported(f"{path}.status", item.get("status", ""), CONDITION_STATUSES))
    reason = item.get("reason", "")
    if not reason:
        errors.append(required(f"{path}.reason"))
    elif not _REASON.fullmatch(reason) or len(reason) > 1024:
        errors.append(
            invalid(
                f"{path}.reason", reason, "a condition reason must start with alphabetic character"
            )
        )
    if not item.get("lastTransitionTime"):
        errors.append(required(f"{path}.lastTransitionTime"))
    if len(item.get("message", "")) > 32768:
        errors.append(too_long(f"{path}.message", 32768))
    return errors


def _network(path: str, data: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    if len(data.get("interfaceName", "")) > 256:
        errors.append(too_long(f"{path}.interfaceName", 256))
    if len(data.get("hardwareAddress", "")) > 128:
        errors.append(too_long(f"{path}.hardwareAddress", 128))

    def ip(p: str, value: str) -> list[FieldError]:
        try:
            ipaddress.ip_interface(value)
        except ValueError:
            return [
                invalid(
                    p,
                    value,
                    "must be a valid address in CIDR form, (e.g. 10.9.8.7/24 or 2001:db8::1/64)",
                )
            ]
        return [] if "/" in value else [invalid(p, value, "must be a valid address in CIDR form")]

    return errors + unique_list(f"{path}.ips", data.get("ips"), 16, ip, key=lambda v: v)


def _device_status(path: str, item: dict[str, Any], allocated: set[str]) -> list[FieldError]:
    errors = rules.driver_name(f"{path}.driver", item.get("driver", ""))
    errors += pool_name(f"{path}.pool", item.get("pool", ""))
    errors += rules.dns_label(f"{path}.device", item.get("device", ""))
    if _result_id(item) not in allocated:
        errors.append(invalid(path, _result_id(item), "must be an allocated device in the claim"))
    conditions = item.get("conditions") or []
    if len(conditions) > MAX_CONDITIONS:
        errors.append(too_many(f"{path}.conditions", len(conditions), MAX_CONDITIONS))
    errors += unique_list(
        f"{path}.conditions", conditions, -1, _condition, key=lambda c: c.get("type", "")
    )
    if "data" in item:
        errors += raw_object(f"{path}.data", item["data"])
    return errors + _network(f"{path}.networkData", item.get("networkData") or {})


def _allocation(path: str, allocation: dict[str, Any], known: set[str]) -> list[FieldError]:
    def result(p: str, item: dict[str, Any]) -> list[FieldError]:
        found = (
            []
            if item.get("request", "") in known
            else [invalid(f"{p}.request", item.get("request", ""), _REF_MSG)]
        )
        found += rules.driver_name(f"{p}.driver", item.get("driver", ""))
        found += pool_name(f"{p}.pool", item.get("pool", ""))
        return found + rules.dns_label(f"{p}.device", item.get("device", ""))

    def config(p: str, item: dict[str, Any]) -> list[FieldError]:
        source = item.get("source", "")
        found = (
            []
            if source in CONFIG_SOURCES
            else [not_supported(f"{p}.source", source, CONFIG_SOURCES)]
        )
        return found + _refs(f"{p}.requests", item.get("requests"), known) + opaque(p, item)

    devices = allocation.get("devices") or {}
    errors = unique_list(f"{path}.devices.results", devices.get("results"), MAX_RESULTS, result)
    errors += unique_list(f"{path}.devices.config", devices.get("config"), 2 * MAX_CONFIGS, config)
    if "nodeSelector" in allocation:
        errors += node_selector(f"{path}.nodeSelector", allocation["nodeSelector"])
    return errors


def claim_status(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """Validate a status update of a ResourceClaim (`new` and `old` are whole objects)."""
    status, old_status = new.get("status") or {}, old.get("status") or {}
    allocation = status.get("allocation")
    reserved = status.get("reservedFor") or []

    def consumer(p: str, item: dict[str, Any]) -> list[FieldError]:
        return [required(f"{p}.{key}") for key in ("resource", "name", "uid") if not item.get(key)]

    errors = unique_list(
        "status.reservedFor", reserved, MAX_RESERVED_FOR, consumer, key=lambda c: c.get("uid", "")
    )
    results = ((allocation or {}).get("devices") or {}).get("results") or []
    allocated = {_result_id(r) for r in results}
    errors += unique_list(
        "status.devices",
        status.get("devices"),
        -1,
        lambda p, d: _device_status(p, d, allocated),
        key=_result_id,
    )
    if reserved and allocation is None:
        errors.append(
            forbidden("status.reservedFor", "may not be specified when `allocated` is not set")
        )
    if reserved and new.get("metadata", {}).get("deletionTimestamp"):
        before = {c.get("uid") for c in old_status.get("reservedFor") or []}
        if any(c.get("uid") not in before for c in reserved):
            detail = "new entries may not be added while `deallocationRequested` or `deletionTimestamp` are set"
            errors.append(forbidden("status.reservedFor", detail))
    if allocation is not None and old_status.get("allocation") is not None:
        if allocation != old_status["allocation"]:
            errors.append(immutable("status.allocation", allocation))
    elif allocation is not None:
        errors += _allocation(
            "status.allocation", allocation, _request_names(new.get("spec") or {})
        )
    return errors
