"""Name, label and object-metadata rules shared by every resource type."""

from __future__ import annotations

import re
from typing import Any

from hostdev_testing.apiserver.errors import (
    FieldError,
    forbidden,
    immutable,
    invalid,
    required,
    too_long,
)

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_LABEL = re.compile(_LABEL)
_DNS_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUALIFIED = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")

DNS_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
C_IDENTIFIER_MSG = (
    "a valid C identifier must start with alphabetic character or '_', followed by a string of "
    "alphanumeric characters or '_' (e.g. 'my_name',  or 'MY_NAME',  or 'MyName', regex used "
    "for validation is '[A-Za-z_][A-Za-z0-9_]*')"
)
QUALIFIED_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


def dns_label_errors(value: str) -> list[str]:
    errors = [] if len(value) <= 63 else ["must be no more than 63 characters"]
    return errors + ([] if _DNS_LABEL.fullmatch(value) else [DNS_LABEL_MSG])


def dns_subdomain_errors(value: str) -> list[str]:
    errors = [] if len(value) <= 253 else ["must be no more than 253 characters"]
    return errors + ([] if _DNS_SUBDOMAIN.fullmatch(value) else [DNS_SUBDOMAIN_MSG])


def c_identifier_ok(value: str) -> bool:
    return _C_IDENTIFIER.fullmatch(value) is not None


def qualified_name_errors(value: str) -> list[str]:
    """Label keys and annotation keys: `[prefix/]name`, prefix a DNS subdomain."""
    prefix, _, name = value.rpartition("/")
    errors: list[str] = []
    if "/" in value and not prefix:
        errors.append("prefix part must be non-empty")
    elif prefix:
        errors += ["prefix part " + e for e in dns_subdomain_errors(prefix)]
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    if name and not _QUALIFIED.fullmatch(name):
        errors.append(QUALIFIED_MSG)
    return errors


def label_value_errors(value: str) -> list[str]:
    errors = [] if len(value) <= 63 else ["must be no more than 63 characters"]
    return errors + ([] if _LABEL_VALUE.fullmatch(value) else [LABEL_VALUE_MSG])


def check(path: str, value: str, messages: list[str]) -> list[FieldError]:
    return [invalid(path, value, m) for m in messages]


def dns_label(path: str, value: str) -> list[FieldError]:
    """A required DNS label, as for device and request names."""
    if not value:
        return [required(path)]
    return check(path, value, dns_label_errors(value))


def dns_subdomain(path: str, value: str) -> list[FieldError]:
    if not value:
        return [required(path)]
    return check(path, value, dns_subdomain_errors(value))


def driver_name(path: str, value: str) -> list[FieldError]:
    """Driver names follow the CSI driver name rules: a lower-case DNS subdomain, 63 at most."""
    if not value:
        return [required(path)]
    errors = [too_long(path, 63)] if len(value) > 63 else []
    return errors + check(path, value, dns_subdomain_errors(value.lower()))


def _map_keys(path: str, mapping: Any, values: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    for key, value in (mapping or {}).items():
        errors += check(path, key, qualified_name_errors(key))
        if values and isinstance(value, str):
            errors += check(f"{path}[{key}]", value, label_value_errors(value))
    return errors


def _owner_references(path: str, refs: Any) -> list[FieldError]:
    errors: list[FieldError] = []
    controllers = 0
    for i, ref in enumerate(refs or []):
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                errors.append(
                    invalid(f"{path}[{i}].{key}", ref.get(key, ""), f"{key} must not be empty")
                )
        controllers += 1 if ref.get("controller") else 0
    if controllers > 1:
        errors.append(invalid(path, refs, "Only one reference can have Controller set to true"))
    return errors


def object_meta(
    meta: dict[str, Any], namespaced: bool, name_rule: str = "subdomain"
) -> list[FieldError]:
    """What ValidateObjectMeta checks for the fields a client sets."""
    errors: list[FieldError] = []
    name = meta.get("name", "")
    if not name:
        errors.append(required("metadata.name", "name or generateName is required"))
    else:
        messages = dns_label_errors(name) if name_rule == "label" else dns_subdomain_errors(name)
        errors += check("metadata.name", name, messages)
    if namespaced and not meta.get("namespace"):
        errors.append(required("metadata.namespace"))
    if not namespaced and meta.get("namespace"):
        errors.append(forbidden("metadata.namespace", "not allowed on this type"))
    errors += _map_keys("metadata.labels", meta.get("labels"), values=True)
    errors += _map_keys("metadata.annotations", meta.get("annotations"), values=False)
    size = sum(len(k) + len(v) for k, v in (meta.get("annotations") or {}).items())
    if size > 256 * 1024:
        errors.append(too_long("metadata.annotations", 256 * 1024))
    errors += _owner_references("metadata.ownerReferences", meta.get("ownerReferences"))
    return errors


def object_meta_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """What ValidateObjectMetaUpdate adds: identity fields never change, finalizers are fenced."""
    errors = [
        immutable(f"metadata.{key}", new.get(key))
        for key in ("name", "namespace", "uid")
        if new.get(key) != old.get(key)
    ]
    if old.get("deletionTimestamp"):
        added = [f for f in new.get("finalizers", []) if f not in old.get("finalizers", [])]
        if added:
            errors.append(
                forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted, "
                    f"found new finalizers {added!r}",
                )
            )
    return errors
