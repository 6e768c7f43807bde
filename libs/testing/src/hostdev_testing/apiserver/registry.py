"""The generic registry: what kube-apiserver does between decoding a request and etcd."""

from __future__ import annotations

import copy
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hostdev_testing.apiserver import errors, rules
from hostdev_testing.apiserver.errors import ApiError, FieldError, bad_request
from hostdev_testing.apiserver.gates import FeatureGates
from hostdev_testing.apiserver.resources import RESOURCES, Obj, ResourceType
from hostdev_testing.apiserver.schema import OpenApi
from hostdev_testing.apiserver.selectors import Selector
from hostdev_testing.apiserver.store import Key, Store
from hostdev_testing.apiserver.strategies import STRATEGIES

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_GENERATE_ATTEMPTS = 8
_SYSTEM_FIELDS = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_name(prefix: str) -> str:
    """The real name generator: prefix cut to 58 characters plus 5 from a vowel-free alphabet."""
    return prefix[:58] + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))


@dataclass(slots=True)
class Outcome:
    """A successful write: the object to return, Warning headers, and whether it is new."""

    obj: Obj
    warnings: list[str] = field(default_factory=list)
    created: bool = False


@dataclass(frozen=True, slots=True)
class WriteOptions:
    """The write query parameters: `dryRun=All` and `fieldValidation`."""

    dry_run: bool = False
    validation: str = "Warn"


DEFAULT_WRITE = WriteOptions()


@dataclass(slots=True)
class _Decoded:
    obj: Obj
    warnings: list[str]
    schema_errors: list[FieldError]


def matches(rt: ResourceType, obj: Obj, fields: Selector) -> bool:
    return fields.matches(rt.fields(obj))


class Registry:
    """Create, read, update and delete with the real server's side effects and checks."""

    def __init__(
        self,
        store: Store,
        openapi: OpenApi | None,
        *,
        gates: FeatureGates | None = None,
    ) -> None:
        self.store = store
        self.openapi = openapi
        self.gates = gates if gates is not None else FeatureGates()

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        found = self.store.get(rt.plural, (namespace if rt.namespaced else "", name))
        if found is None:
            raise errors.not_found(rt, name)
        return copy.deepcopy(found)

    def select(self, rt: ResourceType, namespace: str | None, fields: Selector) -> list[Obj]:
        found = self.store.items(rt.plural, namespace if rt.namespaced else None)
        return [copy.deepcopy(o) for o in found if matches(rt, o, fields)]

    def _decode(self, rt: ResourceType, body: Any, validation: str) -> _Decoded:
        if not isinstance(body, dict):
            raise bad_request(f"json: cannot unmarshal into Go value of type {rt.kind}")
        for key, want in (("apiVersion", rt.api_version), ("kind", rt.kind)):
            if body.get(key) not in (None, "", want):
                raise bad_request(
                    f"the {key} in the data ({body[key]}) does not match the expected {key} ({want})"
                )
        if not isinstance(body.get("metadata", {}), dict):
            raise bad_request(
                f"json: cannot unmarshal into Go struct field {rt.kind}.metadata of type ObjectMeta"
            )
        obj, unknown, schema_errors = copy.deepcopy(body), [], []
        if self.openapi is not None and rt.schema is not None:
            decoded = self.openapi.decode(rt.schema, rt.kind, body)
            obj, unknown = decoded.obj, decoded.unknown
            schema_errors = self.openapi.check(rt.schema, rt.kind, obj)
        if unknown and validation == "Strict":
            listed = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise bad_request(
                f'{rt.kind} in version "v1" cannot be handled as a {rt.kind}: strict decoding error: {listed}'
            )
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        obj.setdefault("metadata", {}).pop("managedFields", None)
        obj["metadata"].pop("selfLink", None)
        warnings = [] if validation == "Ignore" else [f'unknown field "{u}"' for u in unknown]
        return _Decoded(obj, warnings, schema_errors)

    def _namespace(self, rt: ResourceType, namespace: str, meta: dict[str, Any]) -> None:
        if not rt.namespaced:
            meta.pop("namespace", None)
        elif not meta.get("namespace"):
            meta["namespace"] = namespace
        elif meta["namespace"] != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )

    def _validate(
        self, rt: ResourceType, new: Obj, old: Obj | None, status: bool, found: list[FieldError]
    ) -> None:
        strategy = STRATEGIES[rt.plural]
        found = list(found) + rules.object_meta(new["metadata"], rt.namespaced, strategy.name_rule)
        if old is not None:
            found += rules.object_meta_update(new["metadata"], old["metadata"])
            found += strategy.validate_status(new, old) if status else strategy.validate(new, old)
        else:
            found += strategy.validate(new, None)
        if found:
            raise errors.invalid_for(rt, new["metadata"].get("name", ""), found)

    def _storage_form(self, rt: ResourceType, obj: Obj) -> Obj:
        if self.openapi is not None and rt.schema is not None:
            return self.openapi.storage_form(rt.schema, obj)
        return obj

    def create(
        self, rt: ResourceType, namespace: str, body: Any, options: WriteOptions = DEFAULT_WRITE
    ) -> Outcome:
        decoded = self._decode(rt, body, options.validation)
        obj, meta = decoded.obj, decoded.obj["metadata"]
        self._namespace(rt, namespace, meta)
        if rt.namespaced and self.store.get("namespaces", ("", namespace)) is None:
            raise errors.not_found(RESOURCES["namespaces"], namespace)
        for key in (*_SYSTEM_FIELDS, "generation"):
            meta.pop(key, None)
        generated = not meta.get("name") and bool(meta.get("generateName"))
        if generated:
            meta["name"] = generate_name(meta["generateName"])
        if rt.status_subresource and not rt.status_on_create:
            obj["status"] = {}
        if rt.has_generation:
            meta["generation"] = 1
        strategy = STRATEGIES[rt.plural]
        strategy.on_create(obj)
        strategy.on_write(obj)
        self.gates.drop_disabled(rt.plural, obj, None, status=False)
        meta["uid"], meta["creationTimestamp"] = str(uuid.uuid4()), now()
        self._validate(rt, obj, None, False, decoded.schema_errors)
        if meta.get("resourceVersion"):
            raise errors.internal("resourceVersion should not be set on objects to be created")
        obj = self._storage_form(rt, obj)
        for _ in range(_GENERATE_ATTEMPTS if generated else 1):
            if self.store.get(rt.plural, _key(rt, obj)) is None:
                break
            if generated:
                obj["metadata"]["name"] = generate_name(obj["metadata"]["generateName"])
        else:
            raise errors.already_exists(rt, obj["metadata"]["name"])
        stored = obj if options.dry_run else self.store.put(rt.plural, obj)
        return Outcome(stored, decoded.warnings, created=True)

    def replace(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        options: WriteOptions = DEFAULT_WRITE,
        *,
        status: bool = False,
    ) -> Outcome:
        decoded = self._decode(rt, body, options.validation)
        obj, meta = decoded.obj, decoded.obj["metadata"]
        if meta.get("name") != name:
            raise bad_request(
                f"the name of the object ({meta.get('name', '')}) does not match the name on the URL ({name})"
            )
        self._namespace(rt, namespace, meta)
        old = self.get(rt, namespace, name)
        self._check_version(rt, name, meta.get("resourceVersion"), old)
        new = _merged(rt, old, obj, status)
        if not status:
            STRATEGIES[rt.plural].on_write(new)
        self.gates.drop_disabled(rt.plural, new, old, status=status)
        self._validate(rt, new, old, status, decoded.schema_errors)
        new = self._storage_form(rt, new)
        if new == old:
            # An update that changes nothing is not written: same resourceVersion, no event.
            return Outcome(old, decoded.warnings)
        if options.dry_run:
            return Outcome(new, decoded.warnings)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self.store.remove(rt.plural, _key(rt, old))
            return Outcome(new, decoded.warnings)
        return Outcome(self.store.put(rt.plural, new), decoded.warnings)

    def _check_version(self, rt: ResourceType, name: str, version: Any, old: Obj) -> None:
        if not version:
            return
        if version != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name, errors.MODIFIED)

    def delete(
        self, rt: ResourceType, namespace: str, name: str, options: Any, *, dry_run: bool = False
    ) -> Obj:
        old = self.get(rt, namespace, name)
        _check_preconditions(rt, name, old, (options or {}).get("preconditions") or {})
        meta = old["metadata"]
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return old
            marked = copy.deepcopy(old)
            marked["metadata"]["deletionTimestamp"] = now()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            if marked["metadata"].get("generation", 0) > 0:
                marked["metadata"]["generation"] += 1
            return marked if dry_run else self.store.put(rt.plural, marked)
        if not dry_run:
            if rt.plural == "namespaces":
                self._empty_namespace(name)
            self.store.remove(rt.plural, _key(rt, old))
        if rt.returns_deleted_object:
            return old
        details = {
            "name": name,
            **({"group": rt.group} if rt.group else {}),
            "kind": rt.plural,
            "uid": meta["uid"],
        }
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        }

    def _empty_namespace(self, namespace: str) -> None:
        # The namespace controller's job, done at once: remove everything inside first.
        for rt in RESOURCES.values():
            if rt.namespaced:
                for obj in list(self.store.items(rt.plural, namespace)):
                    self.store.remove(rt.plural, _key(rt, obj))


def _key(rt: ResourceType, obj: Obj) -> Key:
    meta = obj["metadata"]
    return (meta.get("namespace", "") if rt.namespaced else "", meta["name"])


def _merged(rt: ResourceType, old: Obj, obj: Obj, status: bool) -> Obj:
    """The object an update would store: system fields kept, subresource rules applied."""
    if status:
        new = copy.deepcopy(old)
        new["status"] = obj.get("status", {})
        return new
    new = obj
    meta, old_meta = new["metadata"], old["metadata"]
    for key in _SYSTEM_FIELDS:
        if key == "uid" and meta.get("uid"):
            continue
        if key in old_meta:
            meta[key] = old_meta[key]
        else:
            meta.pop(key, None)
    meta["resourceVersion"] = old_meta["resourceVersion"]
    if rt.status_subresource:
        if "status" in old:
            new["status"] = copy.deepcopy(old["status"])
        else:
            new.pop("status", None)
    if rt.has_generation:
        changed = new.get("spec") != old.get("spec")
        meta["generation"] = old_meta.get("generation", 1) + (1 if changed else 0)
    return new


def _check_preconditions(rt: ResourceType, name: str, old: Obj, pre: dict[str, Any]) -> None:
    meta = old["metadata"]
    if pre.get("uid") and pre["uid"] != meta["uid"]:
        why = f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta['uid']}"
        raise errors.conflict(rt, name, why)
    if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
        why = (
            f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
            f"ResourceVersion in object meta: {meta['resourceVersion']}"
        )
        raise errors.conflict(rt, name, why)


__all__ = ["ApiError", "Outcome", "Registry", "generate_name", "matches"]
