"""Splits parsed YAML documents into a SimulationInput; pods and templates become claims."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .errors import SchedulingError
from .model import Claim, Object, SimulationInput

_API_GROUP = "resource.k8s.io/"


def _describe(doc: Object, index: int) -> str:
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return f"document {index + 1} ({doc.get('kind', 'no kind')} {name or 'without a name'})"


def _name(doc: Object, what: str) -> str:
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        raise SchedulingError(f"{what}: metadata.name is missing")
    return name


def _namespace(doc: Object) -> str:
    meta = doc.get("metadata") or {}
    namespace = meta.get("namespace") if isinstance(meta, Mapping) else None
    return namespace if isinstance(namespace, str) and namespace else "default"


def _spec(doc: Object, what: str) -> Object:
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        raise SchedulingError(f"{what}: spec is missing or not a mapping")
    return spec


def _resource_kind(doc: Object, what: str, kind: str) -> None:
    api = doc.get("apiVersion")
    if not isinstance(api, str) or not api.startswith(_API_GROUP):
        raise SchedulingError(
            f"{what}: a {kind} must have apiVersion resource.k8s.io/..., not {api!r}"
        )


def _flatten(docs: Iterable[Any]) -> list[Object]:
    flat: list[Object] = []
    for doc in docs:
        if doc is None:
            continue  # an empty YAML document
        if not isinstance(doc, Mapping):
            raise SchedulingError(
                f"document {len(flat) + 1}: not a mapping but {type(doc).__name__}"
            )
        if isinstance(doc.get("kind"), str) and doc["kind"].endswith("List") and "items" in doc:
            items = doc["items"]
            if not isinstance(items, list):
                raise SchedulingError(
                    f"document {len(flat) + 1} ({doc['kind']}): items is not a list"
                )
            flat.extend(_flatten(items))
        else:
            flat.append(doc)
    return flat


def load_objects(docs: Iterable[Mapping[str, Any]]) -> SimulationInput:
    """Sort ResourceClaims, ResourceClaimTemplates, Pods, DeviceClasses, ResourceSlices, Nodes and
    Namespaces (List kinds are unpacked) into a SimulationInput, claims in allocation order.

    A Pod's entry with `resourceClaimTemplateName` yields a claim named `<pod>-<entry>` in the
    pod's namespace (kube-controller-manager adds a random suffix; the simulator cannot). An entry
    with `resourceClaimName` refers to a ResourceClaim of the input, allocated once however many
    pods share it. A template no pod uses is simulated as a claim named after the template.
    Raises SchedulingError naming the document for anything malformed or dangling.
    """
    flat = _flatten(docs)
    classes: dict[str, Object] = {}
    slices: list[Object] = []
    nodes: dict[str, Object] = {}
    namespaces: dict[str, Object] = {}
    templates: dict[tuple[str, str], Object] = {}
    claim_docs: dict[tuple[str, str], Object] = {}
    # Allocation order: ("claim", key) | ("pod", doc) | ("template", key), in document order.
    order: list[tuple[str, Any]] = []
    for index, doc in enumerate(flat):
        what = _describe(doc, index)
        kind = doc.get("kind")
        if kind == "DeviceClass":
            _resource_kind(doc, what, kind)
            name = _name(doc, what)
            _spec(doc, what)
            classes[name] = doc
        elif kind == "ResourceSlice":
            _resource_kind(doc, what, kind)
            _name(doc, what)
            _check_slice(_spec(doc, what), what)
            slices.append(doc)
        elif kind == "ResourceClaim":
            _resource_kind(doc, what, kind)
            key = (_namespace(doc), _name(doc, what))
            if key in claim_docs:
                raise SchedulingError(f"{what}: ResourceClaim {key[0]}/{key[1]} appears twice")
            _check_claim_spec(_spec(doc, what), what)
            claim_docs[key] = doc
            order.append(("claim", key))
        elif kind == "ResourceClaimTemplate":
            _resource_kind(doc, what, kind)
            key = (_namespace(doc), _name(doc, what))
            inner = _spec(doc, what).get("spec")
            if not isinstance(inner, Mapping):
                raise SchedulingError(f"{what}: spec.spec (the claim spec) is missing")
            _check_claim_spec(inner, what)
            templates[key] = doc
            order.append(("template", key))
        elif kind == "Pod":
            _name(doc, what)
            _spec(doc, what)
            order.append(("pod", (doc, what)))
        elif kind == "Node":
            nodes[_name(doc, what)] = doc
        elif kind == "Namespace":
            namespaces[_name(doc, what)] = doc
        else:
            raise SchedulingError(
                f"{what}: kind {kind!r} is not one the simulator reads (ResourceClaim, "
                "ResourceClaimTemplate, Pod, DeviceClass, ResourceSlice, Node, Namespace)"
            )

    used_templates: set[tuple[str, str]] = set()
    claims: list[Claim] = []
    for step, item in order:
        if step == "claim":
            claims.append(_from_claim(item, claim_docs[item]))
        elif step == "pod":
            pod, what = item
            claims.extend(_from_pod(pod, what, claim_docs, templates, used_templates))
    # Templates that no pod uses are simulated under their own name, after the rest.
    for step, item in order:
        if step == "template" and item not in used_templates:
            namespace, name = item
            spec = templates[item]["spec"]["spec"]
            claims.append(Claim(namespace, name, spec, f"ResourceClaimTemplate {namespace}/{name}"))
    return SimulationInput(tuple(claims), classes, tuple(slices), nodes, namespaces)


def _from_claim(key: tuple[str, str], doc: Object) -> Claim:
    status = doc.get("status")
    allocation = status.get("allocation") if isinstance(status, Mapping) else None
    if allocation is not None and not isinstance(allocation, Mapping):
        raise SchedulingError(
            f"ResourceClaim {key[0]}/{key[1]}: status.allocation is not a mapping"
        )
    return Claim(key[0], key[1], doc["spec"], f"ResourceClaim {key[0]}/{key[1]}", allocation)


def _from_pod(
    pod: Object,
    what: str,
    claim_docs: Mapping[tuple[str, str], Object],
    templates: Mapping[tuple[str, str], Object],
    used_templates: set[tuple[str, str]],
) -> list[Claim]:
    namespace, pod_name = _namespace(pod), pod["metadata"]["name"]
    entries = pod["spec"].get("resourceClaims") or []
    if not isinstance(entries, list):
        raise SchedulingError(f"{what}: spec.resourceClaims is not a list")
    claims: list[Claim] = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise SchedulingError(f"{what}: a spec.resourceClaims entry has no name")
        claim_name, template_name = (
            entry.get("resourceClaimName"),
            entry.get("resourceClaimTemplateName"),
        )
        if (claim_name is None) == (template_name is None):
            raise SchedulingError(
                f"{what}: entry {entry['name']!r} must set exactly one of resourceClaimName "
                "and resourceClaimTemplateName"
            )
        if claim_name is not None:
            if (namespace, claim_name) not in claim_docs:
                raise SchedulingError(
                    f"{what}: entry {entry['name']!r} refers to ResourceClaim "
                    f"{namespace}/{claim_name}, which is not in the input"
                )
            continue  # allocated at its own place in the input, once
        key = (namespace, str(template_name))
        template = templates.get(key)
        if template is None:
            raise SchedulingError(
                f"{what}: entry {entry['name']!r} refers to ResourceClaimTemplate "
                f"{namespace}/{template_name}, which is not in the input"
            )
        used_templates.add(key)
        source = f"Pod {namespace}/{pod_name} entry {entry['name']} (template {template_name})"
        claims.append(
            Claim(namespace, f"{pod_name}-{entry['name']}", template["spec"]["spec"], source)
        )
    return claims


def _check_claim_spec(spec: Object, what: str) -> None:
    devices = spec.get("devices") or {}
    if not isinstance(devices, Mapping):
        raise SchedulingError(f"{what}: spec.devices is not a mapping")
    requests = devices.get("requests") or []
    if not isinstance(requests, list):
        raise SchedulingError(f"{what}: spec.devices.requests is not a list")
    names: set[str] = set()
    for request in requests:
        if not isinstance(request, Mapping) or not isinstance(request.get("name"), str):
            raise SchedulingError(f"{what}: a request has no name")
        if request["name"] in names:
            raise SchedulingError(f"{what}: request {request['name']!r} appears twice")
        names.add(request["name"])
        exactly, first = request.get("exactly"), request.get("firstAvailable")
        if (exactly is None) == (first is None):
            raise SchedulingError(
                f"{what}: request {request['name']!r} must set exactly one of exactly and firstAvailable"
            )
        subs = [exactly] if exactly is not None else first
        if not isinstance(subs, list) or not subs:
            raise SchedulingError(f"{what}: request {request['name']!r}: firstAvailable is empty")
        for sub in subs:
            if not isinstance(sub, Mapping) or not isinstance(sub.get("deviceClassName"), str):
                raise SchedulingError(f"{what}: request {request['name']!r} has no deviceClassName")
        if first is not None:
            for sub in first:
                if not isinstance(sub.get("name"), str):
                    raise SchedulingError(
                        f"{what}: request {request['name']!r}: a subrequest has no name"
                    )
                if "adminAccess" in sub:
                    raise SchedulingError(
                        f"{what}: request {request['name']!r}: adminAccess is not a field of "
                        "firstAvailable subrequests"
                    )


def _check_slice(spec: Object, what: str) -> None:
    if not isinstance(spec.get("driver"), str):
        raise SchedulingError(f"{what}: spec.driver is missing")
    pool = spec.get("pool")
    if not isinstance(pool, Mapping) or not isinstance(pool.get("name"), str):
        raise SchedulingError(f"{what}: spec.pool.name is missing")
    for key in ("devices", "sharedCounters"):
        if not isinstance(spec.get(key) or [], list):
            raise SchedulingError(f"{what}: spec.{key} is not a list")
