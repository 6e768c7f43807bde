"""The resource types the emulator serves, with the per-type facts the real server keys on."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

RESOURCE_GROUP = "resource.k8s.io"


def _meta_fields(obj: Obj, namespaced: bool) -> dict[str, str]:
    meta = obj.get("metadata", {})
    fields = {"metadata.name": meta.get("name", "")}
    if namespaced:
        fields["metadata.namespace"] = meta.get("namespace", "")
    return fields


def _default_fields(namespaced: bool) -> Callable[[Obj], dict[str, str]]:
    # Cluster-scoped objects still answer metadata.namespace (always empty), as upstream does.
    def fields(obj: Obj) -> dict[str, str]:
        found = _meta_fields(obj, True)
        if not namespaced:
            found["metadata.namespace"] = ""
        return found

    return fields


def _slice_fields(obj: Obj) -> dict[str, str]:
    spec = obj.get("spec", {})
    found = _meta_fields(obj, False)
    found["spec.nodeName"] = spec.get("nodeName") or ""
    found["spec.driver"] = spec.get("driver", "")
    return found


def _node_fields(obj: Obj) -> dict[str, str]:
    found = _default_fields(False)(obj)
    found["spec.unschedulable"] = "true" if obj.get("spec", {}).get("unschedulable") else "false"
    return found


def _namespace_fields(obj: Obj) -> dict[str, str]:
    found = _default_fields(False)(obj)
    found["status.phase"] = obj.get("status", {}).get("phase", "")
    return found


def _generic_label_error(label: str) -> str:
    only = ", ".join(json.dumps(x) for x in ("metadata.name", "metadata.namespace"))
    return f"{json.dumps(label)} is not a known field selector: only {only}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceType:
    """One REST resource: its names, scope, subresources and selectable fields."""

    plural: str
    singular: str
    kind: str
    group: str
    version: str = "v1"
    namespaced: bool
    status_subresource: bool = False
    status_on_create: bool = False
    has_generation: bool = False
    returns_deleted_object: bool = False
    schema: str | None = None
    short_names: tuple[str, ...] = ()
    fields: Callable[[Obj], dict[str, str]]
    field_label_error: Callable[[str], str] = _generic_label_error

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def gvk(self) -> str:
        return f"{self.api_version}, Kind={self.kind}"


def _slice_label_error(label: str) -> str:
    return f"field label not supported for {RESOURCE_GROUP}/v1, Kind=ResourceSlice: {label}"


RESOURCES: dict[str, ResourceType] = {
    rt.plural: rt
    for rt in (
        ResourceType(
            plural="namespaces",
            singular="namespace",
            kind="Namespace",
            group="",
            namespaced=False,
            status_subresource=True,
            status_on_create=True,
            short_names=("ns",),
            fields=_namespace_fields,
        ),
        ResourceType(
            plural="nodes",
            singular="node",
            kind="Node",
            group="",
            namespaced=False,
            status_subresource=True,
            status_on_create=True,
            short_names=("no",),
            fields=_node_fields,
        ),
        ResourceType(
            plural="deviceclasses",
            singular="deviceclass",
            kind="DeviceClass",
            group=RESOURCE_GROUP,
            namespaced=False,
            has_generation=True,
            returns_deleted_object=True,
            schema="io.k8s.api.resource.v1.DeviceClass",
            fields=_default_fields(False),
        ),
        ResourceType(
            plural="resourceclaims",
            singular="resourceclaim",
            kind="ResourceClaim",
            group=RESOURCE_GROUP,
            namespaced=True,
            status_subresource=True,
            has_generation=True,
            returns_deleted_object=True,
            schema="io.k8s.api.resource.v1.ResourceClaim",
            fields=_default_fields(True),
        ),
        ResourceType(
            plural="resourceclaimtemplates",
            singular="resourceclaimtemplate",
            kind="ResourceClaimTemplate",
            group=RESOURCE_GROUP,
            namespaced=True,
            has_generation=True,
            returns_deleted_object=True,
            schema="io.k8s.api.resource.v1.ResourceClaimTemplate",
            fields=_default_fields(True),
        ),
        ResourceType(
            plural="resourceslices",
            singular="resourceslice",
            kind="ResourceSlice",
            group=RESOURCE_GROUP,
            namespaced=False,
            has_generation=True,
            returns_deleted_object=True,
            schema="io.k8s.api.resource.v1.ResourceSlice",
            fields=_slice_fields,
            field_label_error=_slice_label_error,
        ),
    )
}


def resource(plural: str) -> ResourceType:
    """Look a resource type up by its plural name, e.g. "resourceslices"."""
    try:
        return RESOURCES[plural]
    except KeyError:
        raise KeyError(f"unknown resource {plural!r}; known: {sorted(RESOURCES)}") from None


def by_group(group: str) -> list[ResourceType]:
    return [rt for rt in RESOURCES.values() if rt.group == group]
