"""The Kubernetes manifests under k8s/: they parse, match the official schemas, refer only to
objects that exist, and give each service exactly the host access and API rights it needs."""

from __future__ import annotations

import copy
import importlib
import importlib.resources
import importlib.util
import json
import os
import re
import stat
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import msgspec
import yaml
from referencing import Registry, Resource

from hostdev_devconfig import DevicesConfig
from hostdev_runtime.settings import env_name
from hostdev_testing.nats import nats_server_executable
from hostdev_testing.schemas import schemas_dir
from hostdev_testing.services import MODULES

Obj = dict[str, Any]

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
BASE = K8S / "base"
EXAMPLES = K8S / "examples"
NAMESPACE = "hostdev-system"
DRIVER = "hostdev.k8s.io"
OLDEST_KUBERNETES = (1, 34)
# API groups of objects under k8s/ that no schema shipped with the tests describes.
NO_OFFLINE_SCHEMA = frozenset({"kustomize.config.k8s.io", "kubevirt.io"})


@dataclass(frozen=True)
class HostAccess:
    """What one service's pod may reach on the host.

    mounts:     hostPath volumes as host path -> read-only; each is mounted at its own path.
    privileged: the only way to write sysfs.
    api:        the pod holds an API token (its ServiceAccount has rules).
    """

    mounts: Mapping[str, bool]
    privileged: bool = False
    api: bool = False


# The privilege column of docs/architecture.md ("may touch on the host"), as data.
HOST_ACCESS: dict[str, HostAccess] = {
    # "kubelet plugin directories only": registration, DRA sockets, device plugin sockets,
    # and the kubelet's pod-resources socket (dialled only, so read-only).
    "gateway": HostAccess(
        {
            "/var/lib/kubelet/plugins": False,
            "/var/lib/kubelet/plugins_registry": False,
            "/var/lib/kubelet/device-plugins": False,
            "/var/lib/kubelet/pod-resources": True,
        }
    ),
    # "sysfs/devfs read-only"; publishes ResourceSlices.
    "discovery": HostAccess({"/sys": True, "/dev": True}, api=True),
    # "nothing"
    "allocator": HostAccess({}),
    # "sysfs writes for vfio binding, mdev creation, VF config"; reads ResourceClaims.
    "preparer": HostAccess({"/sys": False, "/dev": False}, privileged=True, api=True),
    # "/var/run/cdi only"
    "cdi-writer": HostAccess({"/var/run/cdi": False}),
}

HTTP_PORTS = {
    "gateway": 9410,
    "discovery": 9411,
    "allocator": 9412,
    "preparer": 9413,
    "cdi-writer": 9414,
}

# (API group, resource, verb) each service may be granted; anything else is a finding.
RBAC_ALLOWED: dict[str, frozenset[tuple[str, str, str]]] = {
    "discovery": frozenset(
        {
            ("resource.k8s.io", "resourceslices", verb)
            for verb in ("get", "list", "watch", "create", "update", "patch", "delete")
        }
        | {("", "nodes", "get")}
    ),
    "preparer": frozenset(
        {
            ("resource.k8s.io", "resourceclaims", "get"),
            # Claims the kubelet forgot are found by a list and a watch across namespaces.
            ("resource.k8s.io", "resourceclaims", "list"),
            ("resource.k8s.io", "resourceclaims", "watch"),
            ("resource.k8s.io", "resourceclaims/status", "update"),
            ("resource.k8s.io", "resourceclaims/driver", "associated-node:update"),
        }
    ),
}
# What writing status.devices takes on Kubernetes 1.36 (the preparer writes it with PUT
# only): resourceclaims/status `update`, and `associated-node:update` on the synthetic
# subresource resourceclaims/driver for this driver's name alone (granular ResourceClaim
# status authorization, kubernetes/kubernetes#134947; kubernetes.io hardening guide for DRA).
DEVICE_STATUS_RULES = {
    ("resourceclaims/status", "update", None),
    ("resourceclaims/driver", "associated-node:update", (DRIVER,)),
}

# DeviceClass name -> the `family` attribute it selects (None: every device of the driver).
DEVICE_CLASSES: dict[str, str | None] = {
    DRIVER: None,
    f"hostpath.{DRIVER}": "hostpath",
    f"pci.{DRIVER}": "pci",
    f"sriov-vf.{DRIVER}": "sriov",
    f"vgpu.{DRIVER}": "mdev",
    f"usb.{DRIVER}": "usb",
}


# --- loading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Doc:
    """One object from one file."""

    path: Path
    obj: Obj

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}: {self.kind}/{self.name}"


def _load(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@cache
def _kustomization(folder: Path) -> Obj:
    (only,) = _load(folder / "kustomization.yaml")
    return only


def _kustomization_dirs() -> list[Path]:
    return sorted(path.parent for path in K8S.rglob("kustomization.yaml"))


@cache
def _resources(folder: Path) -> tuple[Doc, ...]:
    """Every object a kustomization's `resources` bring in, following folders."""
    docs: list[Doc] = []
    for entry in _kustomization(folder).get("resources", []):
        target = (folder / entry).resolve()
        if target.is_dir():
            docs.extend(_resources(target))
        else:
            docs.extend(Doc(target, obj) for obj in _load(target))
    return tuple(docs)


@cache
def _examples() -> tuple[Doc, ...]:
    return tuple(Doc(path, obj) for path in sorted(EXAMPLES.rglob("*.yaml")) for obj in _load(path))


def _base() -> tuple[Doc, ...]:
    return _resources(BASE)


def _of_kind(docs: Iterable[Doc], kind: str) -> dict[str, Doc]:
    return {doc.name: doc for doc in docs if doc.kind == kind}


def _env_file(path: Path) -> dict[str, str]:
    """A kustomize env file: KEY=VALUE lines, `#` comments."""
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def _generated_configmaps(folder: Path) -> dict[str, dict[str, str]]:
    """ConfigMap name -> data, from one kustomization's configMapGenerator."""
    out: dict[str, dict[str, str]] = {}
    for generator in _kustomization(folder).get("configMapGenerator", []):
        data = out.setdefault(generator["name"], {})
        for env in generator.get("envs", []):
            data.update(_env_file(folder / env))
        for literal in generator.get("literals", []):
            key, _, value = literal.partition("=")
            data[key] = value
    return out


def _configmap_keys() -> dict[str, set[str]]:
    """Every ConfigMap the base defines (objects and generators), with every key any
    kustomization gives it (overlays merge into generated ones)."""
    keys: dict[str, set[str]] = {
        name: set(doc.obj.get("data", {})) for name, doc in _of_kind(_base(), "ConfigMap").items()
    }
    base_generated = _generated_configmaps(BASE)
    for name in base_generated:
        keys.setdefault(name, set())
    for folder in _kustomization_dirs():
        for name, data in _generated_configmaps(folder).items():
            if name in keys:
                keys[name] |= set(data)
    return keys


def _service_daemonsets() -> dict[str, Doc]:
    daemonsets = _of_kind(_base(), "DaemonSet")
    return {service: daemonsets[f"hostdev-{service}"] for service in MODULES}


def _pod_spec(doc: Doc) -> Obj:
    spec: Obj = doc.obj["spec"]["template"]["spec"]
    return spec


def _container(doc: Doc) -> Obj:
    (only,) = _pod_spec(doc)["containers"]
    container: Obj = only
    return container


def _env(container: Obj) -> dict[str, Obj]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def _workloads() -> list[Doc]:
    return [doc for doc in _base() if doc.kind in ("DaemonSet", "StatefulSet", "Deployment")]


def _settings_env(module: str) -> frozenset[str]:
    """The environment variables the service's Settings class reads."""
    settings = importlib.import_module(f"{module}.settings").Settings
    return frozenset(env_name(field.name) for field in msgspec.structs.fields(settings))


# --- schema validation -------------------------------------------------------------------------


@cache
def _kubernetes_schema_dir() -> Path:
    """kubernetes-validate's strict schemas of the newest Kubernetes it ships."""
    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    versions: dict[tuple[int, ...], str] = {}
    for entry in root.iterdir():
        match = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)-local-strict", entry.name)
        if match:
            versions[tuple(int(part) for part in match.groups())] = str(entry)
    newest = max(versions)
    assert newest[:2] >= OLDEST_KUBERNETES, f"kubernetes-validate only ships up to {newest}"
    return Path(versions[newest])


@cache
def _kubernetes_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    folder = _kubernetes_schema_dir()
    definitions = json.loads((folder / "_definitions.json").read_text())
    registry: Registry[Any] = Registry().with_resource(
        definitions["$id"], Resource.from_contents(definitions)
    )
    group, _, version = api_version.rpartition("/")
    # File names carry the group's first label: daemonset-apps-v1, clusterrole-rbac-v1, pod-v1.
    suffix = f"{group.split('.')[0]}-{version}" if group else version
    schema = json.loads((folder / f"{kind.lower()}-{suffix}.json").read_text())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _closed(schema: Any) -> Any:
    """The schema with every object that lists its properties refusing unknown ones, as the
    API server's strict field validation (kubectl's default) does."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {key: _closed(value) for key, value in out["properties"].items()}
        if "additionalProperties" not in out and not out.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _closed(out["additionalProperties"])
    if "items" in out:
        out["items"] = _closed(out["items"])
    for combinator in ("allOf", "anyOf", "oneOf"):
        if combinator in out:  # `allOf: [{$ref}]` wraps a reference with a description
            out[combinator] = [_closed(part) for part in out[combinator]]
    return out


@cache
def _resource_components() -> Obj:
    document = json.loads((schemas_dir() / "k8s-resource.k8s.io-v1-openapi.json").read_text())
    schemas = document["components"]["schemas"]
    return {"schemas": {name: _closed(schema) for name, schema in schemas.items()}}


@cache
def _resource_validator(kind: str) -> jsonschema.Draft202012Validator:
    root = {
        "$ref": f"#/components/schemas/io.k8s.api.resource.v1.{kind}",
        "components": _resource_components(),
    }
    return jsonschema.Draft202012Validator(root)


def _schema_errors(obj: Obj) -> list[str]:
    api_version, kind = obj["apiVersion"], obj["kind"]
    if api_version.startswith("resource.k8s.io/"):
        assert api_version == "resource.k8s.io/v1", f"{kind}: only resource.k8s.io/v1 is served"
        validator = _resource_validator(kind)
    else:
        validator = _kubernetes_validator(api_version, kind)
    return [
        f"{'.'.join(str(part) for part in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(obj)
    ]


# --- parsing and schemas -------------------------------------------------------------------------


def test_every_manifest_parses_as_kubernetes_objects() -> None:
    """Every YAML file under k8s/ parses, and each document names its apiVersion, kind and name."""
    files = sorted(K8S.rglob("*.yaml"))
    assert files
    for path in files:
        docs = _load(path)
        assert docs, f"{path}: empty"
        for doc in docs:
            assert isinstance(doc, dict), path
            assert {"apiVersion", "kind"} <= doc.keys(), path
            if doc["kind"] != "Kustomization":
                assert doc.get("metadata", {}).get("name"), f"{path}: {doc['kind']} without a name"


def test_base_and_examples_match_the_kubernetes_schemas() -> None:
    """Core, apps, rbac and policy objects validate against kubernetes-validate's strict schemas
    and resource.k8s.io objects against the official resource.k8s.io/v1 OpenAPI document.
    Kustomizations and KubeVirt objects have no offline schema (test_examples.py checks them)."""
    docs = [
        doc
        for doc in (*_base(), *_examples())
        if doc.obj["apiVersion"].partition("/")[0] not in NO_OFFLINE_SCHEMA
    ]
    errors = {str(doc): _schema_errors(doc.obj) for doc in docs}
    assert {where: found for where, found in errors.items() if found} == {}


def test_schema_checks_reject_a_misspelt_field() -> None:
    """Both schema checks reject an unknown field, so a clean run above means something."""
    daemonset = copy.deepcopy(_service_daemonsets()["gateway"].obj)
    daemonset["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    device_class = copy.deepcopy(_of_kind(_base(), "DeviceClass")[DRIVER].obj)
    device_class["spec"]["selectors"][0]["cel"]["expresion"] = "true"
    assert _schema_errors(daemonset)
    assert _schema_errors(device_class)


# --- kustomize structure -------------------------------------------------------------------------


def test_every_file_a_kustomization_lists_exists() -> None:
    """Resources, patches and generator inputs of every kustomization exist (folders hold a
    kustomization of their own)."""
    missing = []
    for folder in _kustomization_dirs():
        kustomization = _kustomization(folder)
        listed = [*kustomization.get("resources", []), *kustomization.get("components", [])]
        listed += [patch["path"] for patch in kustomization.get("patches", []) if "path" in patch]
        for generator in kustomization.get("configMapGenerator", []):
            listed += generator.get("envs", [])
            listed += [entry.rpartition("=")[2] for entry in generator.get("files", [])]
        for entry in listed:
            target = folder / entry
            if not (target.is_file() or (target / "kustomization.yaml").is_file()):
                missing.append(f"{folder.relative_to(REPO)}: {entry}")
    assert missing == []


def test_every_manifest_file_is_used_by_a_kustomization_or_is_an_example() -> None:
    """No YAML or env file under k8s/ is left out of every kustomization, except the examples."""
    used: set[Path] = set()
    for folder in _kustomization_dirs():
        kustomization = _kustomization(folder)
        used |= {(folder / entry).resolve() for entry in kustomization.get("resources", [])}
        used |= {
            (folder / p["path"]).resolve() for p in kustomization.get("patches", []) if "path" in p
        }
        for generator in kustomization.get("configMapGenerator", []):
            used |= {(folder / entry).resolve() for entry in generator.get("envs", [])}
    files = [*K8S.rglob("*.yaml"), *K8S.rglob("*.env")]
    orphans = [
        str(path.relative_to(REPO))
        for path in files
        if path.name != "kustomization.yaml"
        and EXAMPLES not in path.parents
        and path.resolve() not in used
    ]
    assert orphans == []


def test_overlay_patches_target_objects_of_the_base() -> None:
    """Every patch file in an overlay names an object (kind, name, namespace) the base defines."""
    base = {(doc.kind, doc.name, doc.obj["metadata"].get("namespace")) for doc in _base()}
    for folder in _kustomization_dirs():
        for patch in _kustomization(folder).get("patches", []):
            for obj in _load(folder / patch["path"]):
                target = (obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace"))
                assert target in base, f"{folder / patch['path']}: {target} is not in the base"


def test_workloads_refer_only_to_objects_in_the_base() -> None:
    """ConfigMaps, ServiceAccounts and Services that workloads name (volumes, envFrom, service
    accounts, StatefulSet services, nats:// URLs in settings and NATS configs) exist in base."""
    configmaps = _configmap_keys()
    accounts = _of_kind(_base(), "ServiceAccount")
    services = _of_kind(_base(), "Service")
    for doc in _workloads():
        spec = _pod_spec(doc)
        assert spec.get("serviceAccountName") in accounts, f"{doc}: service account"
        if doc.kind == "StatefulSet":
            assert doc.obj["spec"]["serviceName"] in services, f"{doc}: serviceName"
        names = [v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v]
        for container in spec["containers"]:
            names += [e["configMapRef"]["name"] for e in container.get("envFrom", [])]
            names += [
                e["valueFrom"]["configMapKeyRef"]["name"]
                for e in container.get("env", [])
                if "configMapKeyRef" in e.get("valueFrom", {})
            ]
        for name in names:
            assert name in configmaps, f"{doc}: ConfigMap {name} is not in the base"
    texts = [value for data in _generated_configmaps(BASE).values() for value in data.values()]
    texts += [
        v for doc in _of_kind(_base(), "ConfigMap").values() for v in doc.obj["data"].values()
    ]
    hosts = {
        urlparse(url).hostname for text in texts for url in re.findall(r"nats://[^\s,\]]+", text)
    }
    assert hosts
    for host in hosts:
        assert host is not None
        labels = host.split(".")
        # <service>.<namespace>.svc or <pod>.<service>.<namespace>.svc
        service, namespace = labels[labels.index("svc") - 2 : labels.index("svc")]
        assert (service, namespace) in {(n, NAMESPACE) for n in services}, host


def test_every_service_object_selects_pods_of_a_workload() -> None:
    """Each Service's selector matches the pod labels of some workload in the base."""
    pod_labels = [doc.obj["spec"]["template"]["metadata"]["labels"] for doc in _workloads()]
    for name, doc in _of_kind(_base(), "Service").items():
        selector = doc.obj["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pod_labels), name


# --- privilege separation -------------------------------------------------------------------------


def test_each_service_pod_mounts_exactly_its_host_paths() -> None:
    """Each service mounts exactly the host paths of the privilege table, at the same path in
    the container and read-only where the table says so."""
    for service, doc in _service_daemonsets().items():
        volumes = {v["name"]: v for v in _pod_spec(doc).get("volumes", [])}
        found: dict[str, bool] = {}
        for mount in _container(doc).get("volumeMounts", []):
            host_path = volumes[mount["name"]].get("hostPath")
            if host_path is None:
                continue
            assert mount["mountPath"] == host_path["path"], f"{service}: {mount}"
            found[host_path["path"]] = bool(mount.get("readOnly", False))
        unmounted = [
            v for v in volumes.values() if "hostPath" in v and v["hostPath"]["path"] not in found
        ]
        assert unmounted == [], service
        assert found == dict(HOST_ACCESS[service].mounts), service


def test_only_the_preparer_is_privileged() -> None:
    """No pod but the preparer is privileged or shares host namespaces; every other container
    drops all capabilities and cannot gain privileges."""
    for doc in _workloads():
        spec = _pod_spec(doc)
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), str(doc)
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            context = container.get("securityContext", {})
            expected = doc.name == "hostdev-preparer" and HOST_ACCESS["preparer"].privileged
            assert context.get("privileged", False) is expected, str(doc)
            if not expected:
                assert context.get("allowPrivilegeEscalation") is False, str(doc)
                assert context.get("capabilities", {}).get("drop") == ["ALL"], str(doc)
                assert "add" not in context.get("capabilities", {}), str(doc)


def test_service_pods_get_an_api_token_only_when_they_need_one() -> None:
    """Pods of services without API rules do not mount a ServiceAccount token; the others do."""
    accounts = _of_kind(_base(), "ServiceAccount")
    for service, doc in _service_daemonsets().items():
        spec = _pod_spec(doc)
        account = accounts[spec["serviceAccountName"]].obj
        automount = spec.get(
            "automountServiceAccountToken", account.get("automountServiceAccountToken", True)
        )
        assert automount is HOST_ACCESS[service].api, service


def test_only_discovery_and_the_preparer_have_api_rules_within_the_allow_list() -> None:
    """ClusterRoles exist only for discovery and the preparer, grant only allow-listed
    (group, resource, verb) triples, and are bound to that service's account alone."""
    assert not _of_kind(_base(), "Role")
    assert not _of_kind(_base(), "RoleBinding")
    roles = _of_kind(_base(), "ClusterRole")
    assert set(roles) == {f"hostdev-{service}" for service in RBAC_ALLOWED}
    for service, allowed in RBAC_ALLOWED.items():
        granted = {
            (group, resource, verb)
            for rule in roles[f"hostdev-{service}"].obj["rules"]
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
        }
        assert granted <= allowed, f"{service}: {sorted(granted - allowed)}"
    bindings = _of_kind(_base(), "ClusterRoleBinding")
    assert {
        (
            b.obj["roleRef"]["name"],
            tuple((s["kind"], s["name"], s["namespace"]) for s in b.obj["subjects"]),
        )
        for b in bindings.values()
    } == {
        (f"hostdev-{service}", (("ServiceAccount", f"hostdev-{service}", NAMESPACE),))
        for service in RBAC_ALLOWED
    }


def test_preparer_may_write_device_status_only_for_its_driver_on_its_node() -> None:
    """The preparer's rules on the status subresources are exactly what 1.36 asks of a
    node-local driver writing status.devices with PUT: no patch, no `arbitrary-node` verb,
    the driver subresource limited to the driver name the services run with."""
    (role,) = [d for d in _base() if d.kind == "ClusterRole" and d.name == "hostdev-preparer"]
    granted = {
        (resource, verb, tuple(rule["resourceNames"]) if "resourceNames" in rule else None)
        for rule in role.obj["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        if resource.startswith("resourceclaims/")
    }
    assert granted == DEVICE_STATUS_RULES
    assert _env_file(BASE / "hostdev.env")["HOSTDEV_DRIVER_NAME"] == DRIVER


# --- the services' pods ---------------------------------------------------------------------------


def test_services_run_their_module_from_the_one_image() -> None:
    """All five DaemonSets run the same image, each with its service's module as argument."""
    images = set()
    for service, doc in _service_daemonsets().items():
        container = _container(doc)
        images.add(container["image"])
        assert "command" not in container, f"{service}: the image's `python -m` entry point runs it"
        assert container["args"] == [MODULES[service]], service
        assert importlib.util.find_spec(f"{MODULES[service]}.__main__") is not None, service
    assert len(images) == 1, images


def test_service_env_vars_are_settings_fields() -> None:
    """Every variable a service's pod sets (env and envFrom ConfigMaps, overlays included) is a
    field of that service's Settings or a standard OTEL_ variable, except those only there to be
    interpolated into another one's value as $(NAME) (the NATS password)."""
    configmaps = _configmap_keys()
    for service, doc in _service_daemonsets().items():
        container = _container(doc)
        env = _env(container)
        values = " ".join(str(entry.get("value", "")) for entry in env.values())
        names = set(env) - set(re.findall(r"\$\((\w+)\)", values))
        for source in container.get("envFrom", []):
            names |= configmaps[source["configMapRef"]["name"]]
        unknown = {n for n in names if not n.startswith("OTEL_")} - _settings_env(MODULES[service])
        assert unknown == set(), service


def test_services_learn_their_node_and_pod_from_the_downward_api() -> None:
    """NODE_NAME comes from spec.nodeName everywhere; the gateway gets its pod UID for rolling updates."""
    for service, doc in _service_daemonsets().items():
        env = _env(_container(doc))
        assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName", service
    gateway = _env(_container(_service_daemonsets()["gateway"]))
    assert gateway["HOSTDEV_POD_UID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid"


def test_service_probes_use_healthz_and_readyz_on_the_http_port() -> None:
    """Liveness probes /healthz and readiness probes /readyz on the port HOSTDEV_HTTP_PORT sets."""
    for service, doc in _service_daemonsets().items():
        container = _container(doc)
        port = int(_env(container)["HOSTDEV_HTTP_PORT"]["value"])
        assert port == HTTP_PORTS[service], service
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, service
            assert ports.get(get["port"], get["port"]) == port, service


def test_service_containers_request_cpu_and_memory_and_cap_memory() -> None:
    """Every service container requests CPU and memory and sets a memory limit."""
    for service, doc in _service_daemonsets().items():
        resources = _container(doc)["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys(), service
        assert "memory" in resources["limits"], service


def test_gateway_rolls_with_surge_and_the_other_services_without() -> None:
    """The gateway starts its new pod before stopping the old one; the others never run two per node."""
    for service, doc in _service_daemonsets().items():
        strategy = doc.obj["spec"]["updateStrategy"]
        assert strategy["type"] == "RollingUpdate", service
        rolling = strategy.get("rollingUpdate", {})
        if service == "gateway":
            assert rolling["maxSurge"] in (1, "1", "100%")
            assert rolling["maxUnavailable"] == 0
        else:
            assert rolling.get("maxSurge", 0) == 0, service


# --- NATS ---------------------------------------------------------------------------------------


def _nats_config(name: str) -> str:
    (text,) = _of_kind(_base(), "ConfigMap")[name].obj["data"].values()
    return str(text)


def test_nats_hub_is_three_jetstream_servers_routed_to_each_other() -> None:
    """The hub StatefulSet has three replicas behind a headless Service, and its config enables
    JetStream and routes to every replica."""
    hub = _of_kind(_base(), "StatefulSet")["nats-hub"].obj
    replicas = hub["spec"]["replicas"]
    assert replicas == 3
    service = _of_kind(_base(), "Service")[hub["spec"]["serviceName"]].obj
    assert service["spec"]["clusterIP"] == "None"
    config = _nats_config("nats-hub-config")
    assert re.search(r"^jetstream \{", config, re.MULTILINE)
    routes = set(re.findall(r"nats://(nats-hub-\d+)\.nats-hub\.hostdev-system\.svc:6222", config))
    assert routes == {f"nats-hub-{i}" for i in range(replicas)}


def test_nats_leaf_runs_on_every_node_with_a_domain_from_the_node_name(tmp_path: Path) -> None:
    """The leaf DaemonSet tolerates every taint and derives its JetStream domain from the node
    name, turned into a valid subject token (ip-10-0-0-1.ec2.internal -> ip-10-0-0-1_ec2_internal)."""
    leaf = _of_kind(_base(), "DaemonSet")["nats-leaf"]
    assert {"operator": "Exists"} in _pod_spec(leaf)["tolerations"]
    container = _container(leaf)
    assert _env(container)["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert re.search(r"^\s*domain: \$JS_DOMAIN$", _nats_config("nats-leaf-config"), re.MULTILINE)
    # Run the container's start command with a stand-in nats-server that prints the domain.
    fake = tmp_path / "nats-server"
    fake.write_text('#!/bin/sh\nprintf "%s" "$JS_DOMAIN"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "NODE_NAME": "ip-10-0-0-1.ec2.internal"}
    run = subprocess.run(
        [*container["command"], *container["args"]],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout == "ip-10-0-0-1_ec2_internal"


def test_nats_configs_are_accepted_by_nats_server(tmp_path: Path) -> None:
    """nats-server (the version the tests run) accepts the hub and leaf configurations, with the
    leaf's variables from Secrets (the services' NATS passwords) set."""
    env = {**os.environ, "POD_NAME": "nats-hub-0", "NODE_NAME": "node-1", "JS_DOMAIN": "node-1"}
    leaf = _env(_container(_of_kind(_base(), "DaemonSet")["nats-leaf"]))
    env |= {n: "secret" for n, e in leaf.items() if "secretKeyRef" in e.get("valueFrom", {})}
    for name in ("nats-hub-config", "nats-leaf-config"):
        path = tmp_path / f"{name}.conf"
        path.write_text(_nats_config(name))
        run = subprocess.run(
            [str(nats_server_executable()), "--config", str(path), "-t"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr


def test_services_reach_only_the_leaf_of_their_own_node() -> None:
    """HOSTDEV_NATS_URL names the nats-leaf Service, which routes node-locally to the leaf pods."""
    (url,) = {data["HOSTDEV_NATS_URL"] for data in _generated_configmaps(BASE).values()}
    host = urlparse(url).hostname
    assert host is not None
    assert host.split(".")[0] == "nats-leaf"
    service = _of_kind(_base(), "Service")["nats-leaf"].obj
    assert service["spec"]["internalTrafficPolicy"] == "Local"
    leaf_labels = _of_kind(_base(), "DaemonSet")["nats-leaf"].obj["spec"]["template"]["metadata"][
        "labels"
    ]
    assert service["spec"]["selector"].items() <= leaf_labels.items()


def test_leaf_keeps_its_jetstream_store_on_the_node() -> None:
    """The leaf's JetStream store_dir is a hostPath under /var/lib/hostdev."""
    leaf = _of_kind(_base(), "DaemonSet")["nats-leaf"]
    (store_dir,) = re.findall(r"store_dir: (\S+)", _nats_config("nats-leaf-config"))
    (mount,) = [m for m in _container(leaf)["volumeMounts"] if m["mountPath"] == store_dir]
    (volume,) = [v for v in _pod_spec(leaf)["volumes"] if v["name"] == mount["name"]]
    assert volume["hostPath"]["path"].startswith("/var/lib/hostdev/")


# --- DRA objects and the device selection ---------------------------------------------------------


def test_device_classes_select_the_driver_and_each_family() -> None:
    """One DeviceClass for the whole driver and one per family, each selecting the driver by the
    name the services use and, per family, the family attribute."""
    classes = _of_kind(_base(), "DeviceClass")
    assert set(classes) == set(DEVICE_CLASSES)
    (driver,) = {data["HOSTDEV_DRIVER_NAME"] for data in _generated_configmaps(BASE).values()}
    assert driver == DRIVER
    for name, family in DEVICE_CLASSES.items():
        (selector,) = classes[name].obj["spec"]["selectors"]
        expression = " ".join(selector["cel"]["expression"].split())
        assert f'device.driver == "{driver}"' in expression, name
        if family is None:
            assert "family" not in expression, name
        else:
            assert f'device.attributes["{driver}"].family == "{family}"' in expression, name


def test_device_selection_configmaps_decode_as_the_families_config(
    device_selection_problems: Callable[[str], list[str]],
) -> None:
    """The base's and the overlays' device selections decode with the families' config type
    without unknown keys, and the base offers the documented host paths."""
    selections = [
        Doc(folder / patch["path"], obj)
        for folder in _kustomization_dirs()
        for patch in _kustomization(folder).get("patches", [])
        for obj in _load(folder / patch["path"])
        if obj["kind"] == "ConfigMap"
    ]
    base = _of_kind(_base(), "ConfigMap")["hostdev-devices"]
    for doc in [base, *selections]:
        assert device_selection_problems(doc.obj["data"]["devices.yaml"]) == [], str(doc)
    config = msgspec.yaml.decode(base.obj["data"]["devices.yaml"], type=DevicesConfig)
    paths = {spec.path: spec for spec in config.host_paths}
    assert set(paths) == {
        "/dev/kvm",
        "/dev/dri/renderD*",
        "/dev/vhost-net",
        "/dev/net/tun",
        "/dev/udmabuf",
        "/tmp/.X11-unix",
    }
    assert {path for path, spec in paths.items() if spec.shared} == {
        "/dev/kvm",
        "/dev/vhost-net",
        "/dev/net/tun",
        "/tmp/.X11-unix",
    }
    assert paths["/tmp/.X11-unix"].type == "mount"


def test_hostpath_example_asks_for_kvm_through_a_shipped_device_class() -> None:
    """The example Pod's claim comes from the example template, whose request uses a DeviceClass
    of the base and selects /dev/kvm."""
    examples = [doc for doc in _examples() if doc.path.parent == EXAMPLES / "hostpath"]
    (template,) = _of_kind(examples, "ResourceClaimTemplate").values()
    (pod,) = _of_kind(examples, "Pod").values()
    classes = _of_kind(_base(), "DeviceClass")
    for request in template.obj["spec"]["spec"]["devices"]["requests"]:
        assert request["exactly"]["deviceClassName"] in classes
        assert any("/dev/kvm" in s["cel"]["expression"] for s in request["exactly"]["selectors"])
    claims = {c["name"]: c for c in pod.obj["spec"]["resourceClaims"]}
    assert {c["resourceClaimTemplateName"] for c in claims.values()} == {template.name}
    for container in pod.obj["spec"]["containers"]:
        assert {c["name"] for c in container["resources"]["claims"]} <= claims.keys()


# --- shipped overlays -------------------------------------------------------------------------------

OVERLAYS = K8S / "overlays"


def _built(overlay: Path) -> list[Obj]:
    run = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    return [obj for obj in yaml.safe_load_all(run.stdout) if obj]


def test_every_overlay_builds_into_schema_valid_objects() -> None:
    """`kubectl kustomize` builds each overlay, and every object it yields (patched DaemonSets,
    the overlay's own DeviceClasses) matches the official schemas."""
    overlays = sorted(p.parent for p in OVERLAYS.glob("*/kustomization.yaml"))
    assert {p.name for p in overlays} >= {"example", "intel-desktop"}
    for overlay in overlays:
        errors = {
            f"{overlay.name}: {obj['kind']}/{obj['metadata']['name']}": _schema_errors(obj)
            for obj in _built(overlay)
        }
        assert {where: found for where, found in errors.items() if found} == {}


def test_intel_desktop_discovery_also_sees_the_x11_socket_directory_read_only() -> None:
    """The base does not mount /tmp/.X11-unix; the intel-desktop overlay gives discovery (and
    only discovery) exactly that, read-only, at its own path, so the x11 device is found."""
    built = _built(OVERLAYS / "intel-desktop")
    daemonsets = {o["metadata"]["name"]: o for o in built if o["kind"] == "DaemonSet"}
    for service in HOST_ACCESS:
        doc = Doc(OVERLAYS / "intel-desktop", daemonsets[f"hostdev-{service}"])
        volumes = {v["name"]: v for v in _pod_spec(doc).get("volumes", [])}
        found = {
            volumes[m["name"]]["hostPath"]["path"]: bool(m.get("readOnly", False))
            for m in _container(doc).get("volumeMounts", [])
            if "hostPath" in volumes[m["name"]]
        }
        assert all(
            m["mountPath"] == volumes[m["name"]]["hostPath"]["path"]
            for m in _container(doc).get("volumeMounts", [])
            if "hostPath" in volumes[m["name"]]
        ), service
        extra = {"/tmp/.X11-unix": True} if service == "discovery" else {}
        assert found == {**HOST_ACCESS[service].mounts, **extra}, service
