"""Extended resources served through DRA (KEP-5004): the claim the 1.36 scheduler creates for
a pod's `resources.limits` is prepared like any other; without the feature the classic
device plugin serves the same name."""

from __future__ import annotations

import importlib.resources
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import pytest_asyncio
import yaml
from referencing import Registry, Resource

from hostdev_testing.apiserver import ApiServer
from hostdev_testing.apiserver.gates import EXTENDED_RESOURCE
from hostdev_testing.cluster import (
    EXTENDED_RESOURCE_CLAIM,
    RESOURCE_API,
    Allocated,
    Cluster,
    ExtendedRequest,
)
from hostdev_testing.fakehost import DEMO_HOST_PATHS, FakeHost
from hostdev_testing.kubelet import KubeletSimulator
from hostdev_testing.kubelet_dp import DevicePluginKubelet
from hostdev_testing.schemas import schemas_dir, validate_cdi
from hostdev_testing.services import NodeConfig, Services

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "k8s" / "examples" / "extended-resource"
KVM = "hostdev.k8s.io/kvm"
UDMABUF = "hostdev.k8s.io/udmabuf"


def _example_class() -> dict[str, Any]:
    (device_class,) = yaml.safe_load_all((EXAMPLE / "deviceclass.yaml").read_text())
    assert device_class["spec"]["extendedResourceName"] == KVM
    return dict(device_class)


def _udmabuf_class() -> dict[str, Any]:
    expression = 'device.driver == "hostdev.k8s.io" && device.attributes["hostdev.k8s.io"].path == "/dev/udmabuf"'
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": "udmabuf.hostdev.k8s.io"},
        "spec": {
            "extendedResourceName": UDMABUF,
            "selectors": [{"cel": {"expression": expression}}],
        },
    }


def _pod_schema_errors(pod: dict[str, Any]) -> list[str]:
    """The Pod checked against Kubernetes 1.36's strict Pod schema (kubernetes-validate's
    copy of the official OpenAPI), which knows status.extendedResourceClaimStatus."""
    folder = importlib.resources.files("kubernetes_validate").joinpath(
        "kubernetes-json-schema", "v1.36.0-local-strict"
    )
    definitions = json.loads(folder.joinpath("_definitions.json").read_text())
    registry: Registry[Any] = Registry().with_resource(
        definitions["$id"], Resource.from_contents(definitions)
    )
    schema = json.loads(folder.joinpath("pod-v1.json").read_text())
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return [error.message for error in validator.iter_errors(pod)]


def _pod(name: str, uid: str, status: dict[str, Any]) -> dict[str, Any]:
    """The pod the scheduler made the claim for: two containers, the second with plain
    resources sorted around its extended one (so its request index is 1)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": uid},
        "spec": {
            "containers": [
                {"name": "vm", "image": "busybox", "resources": {"limits": {KVM: 1}}},
                {
                    "name": "display",
                    "image": "busybox",
                    "resources": {"limits": {"cpu": "1", UDMABUF: 1, "memory": "64Mi"}},
                },
            ]
        },
        "status": {"extendedResourceClaimStatus": status},
    }


async def test_scheduler_made_claim_for_extended_resources_prepares_like_any_other(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """A pod asking hostdev.k8s.io/kvm and hostdev.k8s.io/udmabuf in limits gets one
    generated claim (annotated, owned by the pod, requests container-0-request-0 and
    container-1-request-1 with exactly/ExactCount); the kubelet's prepare of it hands over
    /dev/kvm (with its shareID) and /dev/udmabuf under those request names, and unprepare
    leaves nothing behind."""
    await services.start()
    plugin = await kubelet.wait_for_driver(node_config.driver, timeout=10)
    for device_class in (_example_class(), _udmabuf_class()):
        await cluster.call("POST", f"{RESOURCE_API}/deviceclasses", device_class)
    pod_uid, share = str(uuid.uuid4()), str(uuid.uuid4())
    claim, status = await cluster.extended_resource_claim(
        "default",
        "desktop",
        pod_uid,
        [
            ExtendedRequest(
                "vm", 0, 0, KVM, "kvm.hostdev.k8s.io", (Allocated("", "kvm", share_id=share),)
            ),
            ExtendedRequest(
                "display", 1, 1, UDMABUF, "udmabuf.hostdev.k8s.io", (Allocated("", "udmabuf"),)
            ),
        ],
    )
    assert _pod_schema_errors(_pod("desktop", pod_uid, status)) == []
    assert _pod_schema_errors(_pod("desktop", pod_uid, {"resourceClaimName": claim.name}))
    stored = await cluster.call(
        "GET", f"{RESOURCE_API}/namespaces/default/resourceclaims/{claim.name}"
    )
    assert claim.name.startswith("desktop-extended-resources-")
    assert stored["metadata"]["annotations"] == {EXTENDED_RESOURCE_CLAIM: "true"}
    assert stored["metadata"]["ownerReferences"][0]["uid"] == pod_uid
    assert [r["name"] for r in stored["spec"]["devices"]["requests"]] == [
        "container-0-request-0",
        "container-1-request-1",
    ]
    prepared = await plugin.prepare([claim])
    result = prepared.claims[claim.uid]
    assert result.error == ""
    devices = {d.device_name: d for d in result.devices}
    assert devices["kvm"].request_names == ("container-0-request-0",)
    assert devices["kvm"].share_id == share
    assert devices["udmabuf"].request_names == ("container-1-request-1",)
    (spec_file,) = node_config.cdi_root.glob(f"k8s.{node_config.driver}-device_*{claim.uid}*")
    spec = json.loads(spec_file.read_bytes())
    validate_cdi(spec)
    paths = {n["path"] for d in spec["devices"] for n in d["containerEdits"]["deviceNodes"]}
    assert paths == {"/dev/kvm", "/dev/udmabuf"}
    assert (await plugin.unprepare([claim])).kubelet_failure is None
    assert list(node_config.cdi_root.glob(f"k8s.{node_config.driver}-device_*")) == []


class TestWithoutTheFeature:
    """A cluster with DRAExtendedResource off: the class loses the field, the device plugin
    serves the name."""

    @pytest_asyncio.fixture
    async def api_url(self) -> AsyncIterator[str]:
        """The emulator with the gate off, as kube-apiserver --feature-gates would have it."""
        async with ApiServer(
            schemas_dir=schemas_dir(), feature_gates={EXTENDED_RESOURCE: False}
        ) as url:
            yield url

    @pytest.fixture(autouse=True)
    def selection(self, node_config: NodeConfig, fake_host: FakeHost) -> None:
        """The demo host paths, with kvm also offered as a device plugin resource."""
        fake_host.write_config(node_config.devices_config, DEMO_HOST_PATHS)
        text = node_config.devices_config.read_text()
        resources = "resources:\n- {name: hostdev.k8s.io/kvm, devices: [kvm], shares: 4}\n"
        node_config.devices_config.write_text(text + resources)

    async def test_device_plugin_serves_the_name_the_class_cannot_carry(
        self, services: Services, dp_kubelet: DevicePluginKubelet, cluster: Cluster
    ) -> None:
        """The DeviceClass is stored without extendedResourceName (the scheduler would never
        make a claim), and hostdev.k8s.io/kvm is allocatable through the device plugin."""
        stored = await cluster.call("POST", f"{RESOURCE_API}/deviceclasses", _example_class())
        assert "extendedResourceName" not in stored["spec"]
        await services.start()
        devices = await dp_kubelet.wait_for(KVM, lambda d: len(d) == 4, timeout=10)
        result = await dp_kubelet.allocate(KVM, [devices[0].id])
        assert len(result.cdi_devices) == 1
