"""Discovery documents: /api, /apis, the per-version resource lists and /version."""

from __future__ import annotations

from hostdev_testing.apiserver.resources import RESOURCE_GROUP, Obj, ResourceType, by_group

KUBERNETES_VERSION = "v1.36.0"
# Only the verbs served here: the driver needs no patch and no deletecollection.
_VERBS = ["create", "delete", "get", "list", "update", "watch"]


def _entries(rt: ResourceType) -> list[Obj]:
    main: Obj = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": _VERBS,
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if not rt.status_subresource:
        return [main]
    status = {
        "name": f"{rt.plural}/status",
        "singularName": "",
        "namespaced": rt.namespaced,
        "kind": rt.kind,
    }
    return [main, {**status, "verbs": ["get", "update"]}]


def resource_list(group: str) -> Obj:
    """The APIResourceList of `/api/v1` (group "") or `/apis/<group>/v1`."""
    resources = [
        entry for rt in sorted(by_group(group), key=lambda r: r.plural) for entry in _entries(rt)
    ]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/v1" if group else "v1",
        "resources": resources,
    }


def _group() -> Obj:
    version = {"groupVersion": f"{RESOURCE_GROUP}/v1", "version": "v1"}
    return {"name": RESOURCE_GROUP, "versions": [version], "preferredVersion": version}


def group() -> Obj:
    return {"kind": "APIGroup", "apiVersion": "v1", **_group()}


def group_list() -> Obj:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group()]}


def core_versions() -> Obj:
    cidrs = [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:443"}]
    return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": cidrs}


def version() -> Obj:
    return {
        "major": "1",
        "minor": "36",
        "emulationMajor": "1",
        "emulationMinor": "36",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "35",
        "gitVersion": KUBERNETES_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-04-22T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }
