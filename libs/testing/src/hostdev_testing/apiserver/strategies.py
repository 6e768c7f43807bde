"""Per-type behaviour on write: server-side defaults, dropped gated fields and validation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hostdev_testing.apiserver import rules_claim, rules_slice
from hostdev_testing.apiserver.errors import FieldError, immutable
from hostdev_testing.apiserver.resources import Obj

# Fields behind feature gates that are alpha (off) in 1.36; the real server drops them on write.
_GATED_ATTRIBUTE_FORMS = ("ints", "bools", "strings", "versions")
_GATED_DEVICE_FIELDS = ("nodeAllocatableResourceMappings",)


def _nothing(obj: Obj) -> None:
    del obj


def _valid(new: Obj, old: Obj | None) -> list[FieldError]:
    del new, old
    return []


@dataclass(frozen=True, slots=True, kw_only=True)
class Strategy:
    """Hooks a resource type plugs into the generic create/update path."""

    name_rule: str = "subdomain"
    on_create: Callable[[Obj], None] = _nothing
    on_write: Callable[[Obj], None] = _nothing
    validate: Callable[[Obj, Obj | None], list[FieldError]] = _valid
    validate_status: Callable[[Obj, Obj], list[FieldError]] = _valid


def _spec(obj: Obj) -> dict[str, Any]:
    spec: dict[str, Any] = obj.setdefault("spec", {})
    return spec


def _namespace_create(obj: Obj) -> None:
    finalizers = _spec(obj).setdefault("finalizers", [])
    if "kubernetes" not in finalizers:
        finalizers.append("kubernetes")
    obj["status"] = {"phase": "Active"}


def _slice_write(obj: Obj) -> None:
    for device in _spec(obj).get("devices") or []:
        for name in _GATED_DEVICE_FIELDS:
            device.pop(name, None)
        for value in (device.get("attributes") or {}).values():
            for form in _GATED_ATTRIBUTE_FORMS:
                value.pop(form, None)


def _slice_validate(new: Obj, old: Obj | None) -> list[FieldError]:
    return rules_slice.spec(_spec(new), None if old is None else old.get("spec", {}))


def _claim_write(obj: Obj) -> None:
    rules_claim.default_claim_spec(_spec(obj))


def _claim_validate(new: Obj, old: Obj | None) -> list[FieldError]:
    if old is not None:
        return rules_claim.claim_update(new, old)
    return rules_claim.claim_spec("spec", _spec(new))


def _template_write(obj: Obj) -> None:
    rules_claim.default_claim_spec(_spec(obj).setdefault("spec", {}))


def _template_validate(new: Obj, old: Obj | None) -> list[FieldError]:
    if old is not None:
        return [] if new.get("spec") == old.get("spec") else [immutable("spec", new.get("spec"))]
    return rules_claim.template_spec(_spec(new))


def _class_validate(new: Obj, old: Obj | None) -> list[FieldError]:
    del old
    return rules_claim.device_class_spec(_spec(new))


STRATEGIES: dict[str, Strategy] = {
    "namespaces": Strategy(name_rule="label", on_create=_namespace_create),
    "nodes": Strategy(),
    "deviceclasses": Strategy(validate=_class_validate),
    "resourceclaims": Strategy(
        on_write=_claim_write,
        validate=_claim_validate,
        validate_status=rules_claim.claim_status,
    ),
    "resourceclaimtemplates": Strategy(on_write=_template_write, validate=_template_validate),
    "resourceslices": Strategy(on_write=_slice_write, validate=_slice_validate),
}
