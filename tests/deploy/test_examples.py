"""The examples under k8s/examples/: claims ask for DeviceClasses the base ships and select
only on attributes the driver publishes, KubeVirt VMs use their claims the way KubeVirt
accepts them, and device plugin pods ask only for resources the example selection defines.

test_manifests.py checks the resource.k8s.io and core objects against the official schemas;
KubeVirt objects have no schema offline, so the checks here are all they get.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import yaml

from hostdev_devconfig import DevicesConfig
from hostdev_families.registry import build_families, discover_all
from hostdev_families.sriov import MODES, interface_name_error
from hostdev_gateway.dp_model import offered
from hostdev_sysfs import HostRoot
from hostdev_testing.fakehost import FakeHost
from hostdev_testing.fakenetlink import FakeNetlink
from hostdev_testing.fakesysfs import FakeKernel, acceptance_host

Obj = dict[str, Any]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "k8s" / "examples"
DEVICE_CLASSES = REPO / "k8s" / "base" / "deviceclasses.yaml"
DEVICE_PLUGIN = EXAMPLES / "device-plugin"
INTEL_DESKTOP_EXAMPLES = EXAMPLES / "intel-desktop"
INTEL_DESKTOP = REPO / "k8s" / "overlays" / "intel-desktop"
DRIVER = "hostdev.k8s.io"
STANDARD = "resource.kubernetes.io"

# Example folders that must be applicable with `kubectl apply -k`.
KUSTOMIZED = (
    "pci",
    "gpu",
    "sriov",
    "usb",
    "device-plugin",
    "intel-desktop",
    "extended-resource",
    "capacity",
)

# Objects an example may show but not apply: settings of an object another operator owns
# (the KubeVirt CR), merged by hand.
NOT_APPLIED_KINDS = frozenset({("kubevirt.io/v1", "KubeVirt")})

# What the driver publishes per family, as fully qualified attribute names (the driver's own
# attributes live in its domain). test_published_attributes_match_discovery keeps this in
# step with hostdev_families.
_PCI = {"vendorID", "deviceID", "classCode", "iommuGroup", "numaNode"}
_STD_PCI = {f"{STANDARD}/pciBusID", f"{STANDARD}/pcieRoot"}


def _qualified(names: set[str]) -> frozenset[str]:
    return frozenset(name if "/" in name else f"{DRIVER}/{name}" for name in names | {"family"})


PUBLISHED: dict[str, frozenset[str]] = {
    # DRM render nodes also carry their GPU's PCI address.
    "hostpath": _qualified({"path", "type"} | _STD_PCI),
    "pci": _qualified(_PCI | {"hostDriver"} | _STD_PCI),
    "sriov": _qualified(_PCI | {"pfName", "pfPciBusID", "vfIndex", "linkType"} | _STD_PCI),
    "mdev": _qualified({"mdevType", "mdevName", "vendorID", "deviceID", "numaNode"} | _STD_PCI),
    "usb": _qualified(
        {"vendorID", "productID", "serial", "port", "busnum", "devnum", "manufacturer", "product"}
    ),
}

# Families KubeVirt can take from a claim: it knows PCI functions (pciBusID) and mdevs
# (mdevUUID) only, so a USB or host path claim would fail the VM at start.
KUBEVIRT_FAMILIES = frozenset({"pci", "sriov", "mdev"})

# device.attributes["<domain>"].<name> and device.attributes["<domain>"]["<name>"]
_ATTRIBUTE = re.compile(
    r'device\.attributes\[\s*"(?P<domain>[^"]+)"\s*\]'
    r'(?:\.(?P<field>[A-Za-z_][A-Za-z0-9_]*)|\[\s*"(?P<key>[^"]+)"\s*\])'
)
_FAMILY_SELECTOR = re.compile(rf'device\.attributes\["{re.escape(DRIVER)}"\]\.family == "(\w+)"')
_PATH_SELECTOR = re.compile(rf'device\.attributes\["{re.escape(DRIVER)}"\]\.path == "')
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_PLAIN_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})
VF_CONFIG_KEYS = frozenset({"apiVersion", "kind", "mode", "vlan", "mac", "trust", "interfaceName"})


# --- loading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Doc:
    """One object from one example file."""

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
def _examples() -> tuple[Doc, ...]:
    return tuple(
        Doc(path, obj)
        for path in sorted(EXAMPLES.rglob("*.yaml"))
        if path.name != "kustomization.yaml"
        for obj in _load(path)
    )


def _of_kind(kind: str) -> list[Doc]:
    return [doc for doc in _examples() if doc.kind == kind]


def _claim_spec(doc: Doc) -> Obj:
    """The ResourceClaimSpec of a ResourceClaim or a ResourceClaimTemplate."""
    spec: Obj = doc.obj["spec"]["spec"] if doc.kind == "ResourceClaimTemplate" else doc.obj["spec"]
    return spec


def _claims() -> list[Doc]:
    return [*_of_kind("ResourceClaimTemplate"), *_of_kind("ResourceClaim")]


def _requests(spec: Obj) -> dict[str, Obj]:
    return {request["name"]: request for request in spec["devices"].get("requests", [])}


@dataclass(frozen=True)
class Alternative:
    """What one request (or one firstAvailable subrequest) asks for."""

    request: str
    device_class: str
    selectors: tuple[str, ...]
    subrequest: str = ""  # its name within firstAvailable; "" for `exactly`


def _alternatives(request: Obj) -> Iterator[Alternative]:
    for part in [request["exactly"]] if "exactly" in request else request["firstAvailable"]:
        yield Alternative(
            request["name"],
            part["deviceClassName"],
            tuple(s["cel"]["expression"] for s in part.get("selectors", [])),
            part.get("name", ""),
        )


def _addressed(requests: dict[str, Obj], reference: str) -> list[Alternative]:
    """What a config entry's request reference reaches: `req` every alternative of the
    request, `req/sub` that subrequest alone."""
    request, _, subrequest = reference.partition("/")
    found = [
        a for a in _alternatives(requests[request]) if a.subrequest == subrequest or not subrequest
    ]
    assert found, reference
    return found


def _device_class_objects() -> list[Obj]:
    """The DeviceClasses a claim may name: the base's, the shipped overlays' and the
    examples' own (an example's class is applied with it)."""
    found = _load(DEVICE_CLASSES)
    for path in sorted((REPO / "k8s" / "overlays").glob("*/deviceclasses.yaml")):
        found += _load(path)
    return found + [doc.obj for doc in _of_kind("DeviceClass")]


@cache
def _class_families() -> dict[str, frozenset[str]]:
    """DeviceClass name -> the families it can select, from the classes' own CEL: the
    family named, or hostpath for a class selecting a host path."""
    families: dict[str, frozenset[str]] = {}
    for obj in _device_class_objects():
        expressions = " ".join(s["cel"]["expression"] for s in obj["spec"]["selectors"])
        flat = " ".join(expressions.split())
        named = frozenset(_FAMILY_SELECTOR.findall(flat))
        if not named and _PATH_SELECTOR.search(flat):
            named = frozenset({"hostpath"})
        families[obj["metadata"]["name"]] = named or frozenset(PUBLISHED)
    return families


def _referenced_attributes(expression: str) -> set[str]:
    """Fully qualified names of the attributes a CEL expression reads; raises on a reference
    this parser does not understand, so nothing slips past unchecked."""
    found = {f"{m['domain']}/{m['field'] or m['key']}" for m in _ATTRIBUTE.finditer(expression)}
    unparsed = expression.count("device.attributes") - len(_ATTRIBUTE.findall(expression))
    assert unparsed == 0, f"unparsed attribute reference in {expression!r}"
    return found


def _folder_target(doc: Doc, kind: str, name: str) -> Doc | None:
    """The object of `kind` named `name` in the same example folder as `doc`."""
    for other in _of_kind(kind):
        if other.path.parent == doc.path.parent and other.name == name:
            return other
    return None


def _driver_configs(spec: Obj, request: str) -> list[Obj]:
    """This driver's opaque parameters that apply to one request of a claim, in order."""
    return [
        entry["opaque"]["parameters"]
        for entry in spec["devices"].get("config", [])
        if entry["opaque"]["driver"] == DRIVER and request in (entry.get("requests") or [request])
    ]


# --- kustomize wiring ------------------------------------------------------------------------


def _listed(folder: Path) -> set[str]:
    (kustomization,) = _load(folder / "kustomization.yaml")
    return set(kustomization.get("resources", []))


def test_every_example_folder_lists_its_manifests_in_a_kustomization() -> None:
    """Each example folder has a kustomization listing every YAML file in it, except files
    that only hold settings of objects another operator owns (the KubeVirt CR)."""
    for name in KUSTOMIZED:
        assert (EXAMPLES / name / "kustomization.yaml").is_file(), name
    for folder in sorted(p.parent for p in EXAMPLES.rglob("kustomization.yaml")):
        files = {p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml"}
        not_applied = {
            name
            for name in files
            if {(d["apiVersion"], d["kind"]) for d in _load(folder / name)} <= NOT_APPLIED_KINDS
        }
        assert _listed(folder) == files - not_applied, folder.name


def test_kustomize_builds_each_example_folder_into_its_objects() -> None:
    """`kubectl kustomize` builds every example folder into exactly the objects of the files
    it lists, unchanged in kind and name."""
    assert shutil.which("kubectl"), "kubectl (Debian package kubectl) runs the kustomize build"
    for folder in sorted(p.parent for p in EXAMPLES.rglob("kustomization.yaml")):
        run = subprocess.run(
            ["kubectl", "kustomize", str(folder)], capture_output=True, text=True, check=False
        )
        assert run.returncode == 0, run.stderr
        built = {(o["kind"], o["metadata"]["name"]) for o in yaml.safe_load_all(run.stdout) if o}
        expected = {
            (o["kind"], o["metadata"]["name"])
            for entry in _listed(folder)
            for o in _load(folder / entry)
        }
        assert built == expected, folder.name


def test_example_objects_do_not_overwrite_each_other() -> None:
    """No two examples define the same object, so all of them can live in one namespace."""
    seen: dict[tuple[str, str | None, str], str] = {}
    for doc in _examples():
        key = (doc.kind, doc.obj["metadata"].get("namespace"), doc.name)
        assert key not in seen, f"{doc} and {seen[key]}"
        seen[key] = str(doc)


# --- claims ----------------------------------------------------------------------------------


def test_claims_request_device_classes_the_base_ships() -> None:
    """Every request of every example claim and claim template names a DeviceClass of
    k8s/base/deviceclasses.yaml."""
    assert _claims()
    for doc in _claims():
        for request in _requests(_claim_spec(doc)).values():
            for alternative in _alternatives(request):
                assert alternative.device_class in _class_families(), f"{doc}: {alternative}"


def test_selectors_use_only_attributes_the_driver_publishes_for_the_class() -> None:
    """Every attribute a CEL selector or a matchAttribute constraint reads is one the driver
    publishes for a family the request's DeviceClass selects (productID on a PCI class would
    match nothing, and a typo fails every allocation)."""
    checked = 0
    for doc in _claims():
        spec = _claim_spec(doc)
        families: dict[str, set[str]] = {}
        for request in _requests(spec).values():
            for alternative in _alternatives(request):
                known = _class_families()[alternative.device_class]
                families.setdefault(alternative.request, set()).update(known)
                allowed = frozenset().union(*(PUBLISHED[f] for f in known))
                for expression in alternative.selectors:
                    assert 'device.driver == "' not in expression or (
                        f'device.driver == "{DRIVER}"' in expression
                    ), f"{doc}: {expression}"
                    used = _referenced_attributes(expression)
                    checked += len(used)
                    assert used <= allowed, f"{doc}: {sorted(used - allowed)}"
        for constraint in spec["devices"].get("constraints", []):
            attribute = constraint.get("matchAttribute")
            if attribute is None:
                continue
            for request in constraint.get("requests") or list(families):
                allowed = frozenset().union(*(PUBLISHED[f] for f in families[request]))
                assert attribute in allowed, f"{doc}: {attribute} for {request}"
    assert checked, "no selector read any attribute"


def test_published_attributes_match_discovery_on_the_sample_host(tmp_path: Path) -> None:
    """The attribute lists above are what the families publish on the acceptance host (NVMe,
    an SR-IOV PF, an iGPU with mdev types, USB devices, a render node), all families on."""
    host = acceptance_host(tmp_path / "root")
    config = msgspec.convert(
        {
            "hostPaths": [{"path": "/dev/kvm", "name": "kvm"}, {"path": "/dev/dri/renderD*"}],
            "pci": [{}],
            "sriov": [{}],
            "mdev": [{}],
            "usb": [{}],
        },
        DevicesConfig,
    )
    families = build_families(
        config, HostRoot(host.root), FakeKernel(host.root), FakeNetlink(tmp_path)
    )
    found: dict[str, set[str]] = {}
    for device in discover_all(families):
        found.setdefault(device.family, set()).update(device.attributes)
    assert {family: _qualified(names) for family, names in found.items()} == PUBLISHED


def test_vf_configs_are_settings_the_driver_understands() -> None:
    """This driver's opaque config in the examples is a VfConfig for SR-IOV requests only,
    with known keys and values the SR-IOV family accepts (the driver ignores unknown keys,
    so a misspelt `vLan` would silently do nothing)."""
    configs = 0
    for doc in _claims():
        spec = _claim_spec(doc)
        requests = _requests(spec)
        for entry in spec["devices"].get("config", []):
            opaque = entry["opaque"]
            if opaque["driver"] != DRIVER:
                continue
            configs += 1
            for request in entry.get("requests") or list(requests):
                classes = {a.device_class for a in _addressed(requests, request)}
                families = set().union(*(_class_families()[c] for c in classes))
                assert families == {"sriov"}, f"{doc}: VfConfig for {request}"
            params = opaque["parameters"]
            assert params["apiVersion"] == f"{DRIVER}/v1alpha1", str(doc)
            assert params["kind"] == "VfConfig", str(doc)
            assert params.keys() <= VF_CONFIG_KEYS, (
                f"{doc}: {sorted(params.keys() - VF_CONFIG_KEYS)}"
            )
            assert params.get("mode", "vfio") in MODES, str(doc)
            vlan = params.get("vlan", 0)
            assert isinstance(vlan, int), str(doc)
            assert not isinstance(vlan, bool), str(doc)
            assert 0 <= vlan <= 4095, str(doc)
            assert _MAC.match(str(params.get("mac", "00:00:00:00:00:00")).lower()), str(doc)
            assert isinstance(params.get("trust", False), bool), str(doc)
            if "interfaceName" in params:
                error = interface_name_error(params["interfaceName"])
                assert error is None, f"{doc}: interfaceName {error}"
    assert configs


# --- Pods ------------------------------------------------------------------------------------


def test_pods_use_claims_defined_next_to_them() -> None:
    """Each Pod claim names a claim template or a claim of its own example folder, and each
    container claim (and request, when given) exists."""
    for doc in _of_kind("Pod"):
        spec = doc.obj["spec"]
        claims: dict[str, Obj] = {}
        for claim in spec.get("resourceClaims", []):
            sources = {"resourceClaimName", "resourceClaimTemplateName"} & claim.keys()
            assert len(sources) == 1, f"{doc}: {claim}"
            (source,) = sources
            kind = "ResourceClaim" if source == "resourceClaimName" else "ResourceClaimTemplate"
            target = _folder_target(doc, kind, claim[source])
            assert target is not None, f"{doc}: no {kind} {claim[source]} next to it"
            claims[claim["name"]] = _claim_spec(target)
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            for use in container.get("resources", {}).get("claims", []):
                assert use["name"] in claims, f"{doc}: {use}"
                if "request" in use:
                    assert use["request"] in _requests(claims[use["name"]]), f"{doc}: {use}"


def _extended_resources(container: Obj) -> dict[str, dict[str, Any]]:
    """Extended resource name -> {limits|requests: quantity} of one container."""
    out: dict[str, dict[str, Any]] = {}
    for section in ("limits", "requests"):
        for name, value in container.get("resources", {}).get(section, {}).items():
            if name not in _PLAIN_RESOURCES and not name.startswith("hugepages-"):
                out.setdefault(name, {})[section] = value
    return out


def _example_selection() -> DevicesConfig:
    (configmap,) = [d for d in _of_kind("ConfigMap") if d.path.parent == DEVICE_PLUGIN]
    return msgspec.yaml.decode(configmap.obj["data"]["devices.yaml"], type=DevicesConfig)


def _overlay_selection(overlay: Path) -> DevicesConfig:
    (configmap,) = [o for o in _load(overlay / "devices.yaml") if o["kind"] == "ConfigMap"]
    return msgspec.yaml.decode(configmap["data"]["devices.yaml"], type=DevicesConfig)


def _offered_to(folder: Path) -> set[str]:
    """Extended resource names the pods of an example folder may ask for: the device plugin
    resources of the selection the folder is applied with, or the extendedResourceName of a
    DeviceClass next to them (served through DRA)."""
    if folder == DEVICE_PLUGIN:
        return {spec.name for spec in _example_selection().resources}
    if folder == INTEL_DESKTOP_EXAMPLES:
        return {spec.name for spec in _overlay_selection(INTEL_DESKTOP).resources}
    return {
        str(doc.obj["spec"]["extendedResourceName"])
        for doc in _of_kind("DeviceClass")
        if doc.path.parent == folder and "extendedResourceName" in doc.obj["spec"]
    }


def test_pods_ask_for_exactly_the_extended_resources_their_folder_offers() -> None:
    """The pods of each folder together ask for every extended resource its selection or
    its DeviceClasses offer and for nothing else (no pod of any example asks for an
    undefined one), each as a whole number in limits, with requests, when given, equal."""
    used: dict[Path, set[str]] = {}
    for doc in _of_kind("Pod"):
        defined = _offered_to(doc.path.parent)
        for container in doc.obj["spec"]["containers"]:
            for name, sections in _extended_resources(container).items():
                assert name in defined, f"{doc}: {name} is not offered to its folder"
                assert isinstance(sections.get("limits"), int), f"{doc}: {name} {sections}"
                assert sections["limits"] >= 1, f"{doc}: {name}"
                assert sections.get("requests", sections["limits"]) == sections["limits"], name
                used.setdefault(doc.path.parent, set()).add(name)
    for folder in (DEVICE_PLUGIN, INTEL_DESKTOP_EXAMPLES, EXAMPLES / "extended-resource"):
        assert used.get(folder) == _offered_to(folder), folder.name


def test_no_deployment_offers_one_name_through_both_paths() -> None:
    """A shipped overlay never gives a DeviceClass the extendedResourceName of one of its own
    device plugin resources: a node must not offer a name both ways (KEP-5004)."""
    for overlay in sorted((REPO / "k8s" / "overlays").iterdir()):
        if not (overlay / "devices.yaml").is_file():
            continue
        plugin = {spec.name for spec in _overlay_selection(overlay).resources}
        classes = [
            o for path in overlay.glob("*.yaml") for o in _load(path) if o["kind"] == "DeviceClass"
        ]
        named = {
            o["spec"]["extendedResourceName"]
            for o in classes
            if "extendedResourceName" in o["spec"]
        }
        assert plugin & named == set(), overlay.name


def test_device_plugin_selection_resolves_every_resource_on_a_sample_host(
    tmp_path: Path, device_selection_problems: Callable[[str], list[str]]
) -> None:
    """The example selection decodes without unknown keys, and on the acceptance host (its
    host paths added) every resource offers IDs: `shares` copies of each shared device,
    and no resource asks for shares of a device that cannot be shared (it would silently be
    offered once)."""
    (configmap,) = [d for d in _of_kind("ConfigMap") if d.path.parent == DEVICE_PLUGIN]
    assert device_selection_problems(configmap.obj["data"]["devices.yaml"]) == []
    config = _example_selection()
    host = acceptance_host(tmp_path / "root")
    fake = FakeHost(host.root)
    for path in config.host_paths:
        if fake.path(path.path).exists():
            continue
        if path.type == "mount":
            fake.directory(path.path)
        else:
            fake.device_node(path.path)
    families = build_families(
        config, HostRoot(host.root), FakeKernel(host.root), FakeNetlink(tmp_path)
    )
    devices = {device.name: device for device in discover_all(families)}
    for spec in config.resources:
        ids = offered(spec, devices, {})
        behind = {offer.device for offer in ids}
        assert behind, f"{spec.name} offers nothing"
        if spec.shares > 1:
            assert all(devices[name].shareable for name in behind), spec.name
            assert len(ids) == spec.shares * len(behind), spec.name


# --- KubeVirt --------------------------------------------------------------------------------


def _kubevirt_objects() -> list[Doc]:
    return [doc for doc in _examples() if doc.obj["apiVersion"].startswith("kubevirt.io/")]


def test_kubevirt_objects_are_v1_and_named() -> None:
    """KubeVirt objects (no offline schema) parse and name their apiVersion, kind and name;
    VMs use runStrategy (not the deprecated `running`) and have a volume per disk."""
    vms = 0
    for doc in _kubevirt_objects():
        assert doc.obj["apiVersion"] == "kubevirt.io/v1", str(doc)
        assert doc.kind in ("VirtualMachine", "KubeVirt"), str(doc)
        assert _DNS_LABEL.match(doc.name), str(doc)
        if doc.kind == "VirtualMachine":
            vms += 1
            assert "running" not in doc.obj["spec"], str(doc)
            assert doc.obj["spec"]["runStrategy"], str(doc)
            template = doc.obj["spec"]["template"]["spec"]
            disks = {d["name"] for d in template["domain"]["devices"].get("disks", [])}
            assert disks <= {v["name"] for v in template.get("volumes", [])}, str(doc)
    assert vms


def test_kubevirt_config_enables_dra_devices_and_leaves_mdevs_to_the_driver() -> None:
    """The KubeVirt CR example turns on GPUs and host devices from claims and turns off
    virt-handler's mdev management, which would remove the driver's vGPUs."""
    (doc,) = [d for d in _kubevirt_objects() if d.kind == "KubeVirt"]
    configuration = doc.obj["spec"]["configuration"]
    gates = set(configuration["developerConfiguration"]["featureGates"])
    assert {"GPUsWithDRA", "HostDevicesWithDRA"} <= gates
    assert configuration["mediatedDevicesConfiguration"]["enabled"] is False


def _dra_devices(template: Obj) -> list[tuple[str, Obj]]:
    """(where, claim request) of every device a VMI takes from a claim."""
    devices = template["domain"]["devices"]
    found = [(f"gpus/{d['name']}", d) for d in devices.get("gpus", []) if "claimName" in d]
    found += [
        (f"hostDevices/{d['name']}", d) for d in devices.get("hostDevices", []) if "claimName" in d
    ]
    found += [
        (f"networks/{n['name']}", n["resourceClaim"])
        for n in template.get("networks", [])
        if "resourceClaim" in n
    ]
    return found


def test_vms_use_their_claims_as_kubevirt_requires() -> None:
    """Each VM's claims are unique DNS labels naming a claim or template of its folder; every
    DRA gpu/hostDevice names a listed claim and a request, never a deviceName too, each
    (claim, request) pair once; every listed claim is used. The request is an `exactly`
    request for one device (KubeVirt maps a request to one device and ignores firstAvailable
    subrequests), of a family KubeVirt can attach, and SR-IOV requests ask for vfio mode."""
    vms = [d for d in _kubevirt_objects() if d.kind == "VirtualMachine"]
    assert vms
    for doc in vms:
        template = doc.obj["spec"]["template"]["spec"]
        claims: dict[str, Obj] = {}
        for claim in template.get("resourceClaims", []):
            assert _DNS_LABEL.match(claim["name"]), f"{doc}: {claim}"
            assert claim["name"] not in claims, f"{doc}: {claim['name']} twice"
            sources = {"resourceClaimName", "resourceClaimTemplateName"} & claim.keys()
            assert len(sources) == 1, f"{doc}: {claim}"
            (source,) = sources
            kind = "ResourceClaim" if source == "resourceClaimName" else "ResourceClaimTemplate"
            target = _folder_target(doc, kind, claim[source])
            assert target is not None, f"{doc}: no {kind} {claim[source]} next to it"
            claims[claim["name"]] = _claim_spec(target)
        pairs: set[tuple[str, str]] = set()
        devices = _dra_devices(template)
        assert devices, f"{doc}: no device from a claim"
        for where, device in devices:
            assert "deviceName" not in device, f"{doc}: {where} is both DRA and device plugin"
            pair = (device["claimName"], device["requestName"])
            assert pair[0] in claims, f"{doc}: {where} names unknown claim {pair[0]}"
            assert pair not in pairs, f"{doc}: {where} repeats {pair}"
            pairs.add(pair)
            spec = claims[pair[0]]
            requests = _requests(spec)
            assert all("firstAvailable" not in r for r in requests.values()), f"{doc}: {pair}"
            request = requests.get(pair[1])
            assert request is not None, f"{doc}: {where} names unknown request {pair[1]}"
            exactly = request["exactly"]
            assert exactly.get("allocationMode", "ExactCount") == "ExactCount", f"{doc}: {where}"
            assert exactly.get("count", 1) == 1, f"{doc}: {where}"
            families = _class_families()[exactly["deviceClassName"]]
            assert families <= KUBEVIRT_FAMILIES, f"{doc}: {where} may get {sorted(families)}"
            if families == {"sriov"}:
                modes = [c["mode"] for c in _driver_configs(spec, pair[1]) if "mode" in c]
                assert modes[-1:] == ["vfio"], f"{doc}: {where} needs a VF in vfio mode"
        assert {claim for claim, _ in pairs} == claims.keys(), f"{doc}: unused claims"
