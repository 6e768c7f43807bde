"""What the API emulator accepts and rejects on write, against the official OpenAPI documents."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from hostdev_testing.apiserver import ApiServer
from hostdev_testing.schemas import schemas_dir

DRIVER = "gpu.example.com"
Body = dict[str, Any]


def valid_slice() -> Body:
    """The node-local pool example of kubelet-protocols.md 5.2, with every attribute kind."""
    owner = {
        "apiVersion": "v1",
        "kind": "Node",
        "name": "node-1",
        "uid": "6f1f4a53",
        "controller": True,
    }
    attributes = {
        "model": {"string": "A100-SXM4-40GB"},
        "driverVersion": {"version": "550.54.15"},
        "index": {"int": 0},
        "migCapable": {"bool": True},
        "resource.kubernetes.io/pcieRoot": {"string": "pci0000:00"},
        "resource.kubernetes.io/pciBusID": {"string": "0000:3b:00.0"},
    }
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"generateName": "node-1-gpu.example.com-", "ownerReferences": [owner]},
        "spec": {
            "driver": DRIVER,
            "nodeName": "node-1",
            "pool": {"name": "node-1", "generation": 1, "resourceSliceCount": 1},
            "devices": [
                {
                    "name": "gpu-0",
                    "attributes": attributes,
                    "capacity": {"memory": {"value": "40Gi"}},
                },
                {
                    "name": "gpu-1",
                    "attributes": {"index": {"int": 1}},
                    "capacity": {"memory": {"value": "40Gi"}},
                },
            ],
        },
    }


def devices(count: int, **extra: Any) -> list[Body]:
    return [{"name": f"dev-{i}", **copy.deepcopy(extra)} for i in range(count)]


def with_spec(**changes: Any) -> Body:
    body = valid_slice()
    for key, value in changes.items():
        if value is None:
            body["spec"].pop(key, None)
        else:
            body["spec"][key] = value
    return body


def with_device(**changes: Any) -> Body:
    body = valid_slice()
    body["spec"]["devices"][0].update(changes)
    return body


TAINT = {"key": "example.com/broken", "effect": "NoSchedule"}
COUNTERS = [{"name": "gpu-0-counters", "counters": {"memory": {"value": "40Gi"}}}]

INVALID_SLICES: list[tuple[str, Callable[[], Body], str]] = [
    (
        "129 devices",
        lambda: with_spec(devices=devices(129)),
        "spec.devices: Too many: 129: must have at most 128 items",
    ),
    (
        "65 tainted devices",
        lambda: with_spec(devices=devices(65, taints=[TAINT])),
        "spec.devices: Too many: 65: must have at most 64 items",
    ),
    (
        "bad device name",
        lambda: with_device(name="GPU_0"),
        'spec.devices[0].name: Invalid value: "GPU_0"',
    ),
    (
        "duplicate device name",
        lambda: with_spec(devices=[{"name": "a"}, {"name": "a"}]),
        'spec.devices[1]: Duplicate value: "a"',
    ),
    ("missing pool", lambda: with_spec(pool=None), "spec.pool.name: Required value"),
    (
        "zero slice count",
        lambda: with_spec(pool={"name": "p", "generation": 0, "resourceSliceCount": 0}),
        "spec.pool.resourceSliceCount: Invalid value: 0: must be greater than zero",
    ),
    ("missing driver", lambda: with_spec(driver=None), "spec.driver: Required value"),
    (
        "no placement",
        lambda: with_spec(nodeName=None),
        "spec: Required value: exactly one of `nodeName`",
    ),
    ("two placements", lambda: with_spec(allNodes=True), "but multiple fields are set"),
    (
        "allNodes false",
        lambda: with_spec(nodeName=None, allNodes=False),
        "must be either unset or set to true",
    ),
    (
        "devices and counters",
        lambda: with_spec(sharedCounters=COUNTERS),
        "only one of `sharedCounters` or `devices` is allowed",
    ),
    (
        "two attribute values",
        lambda: with_device(attributes={"a": {"int": 1, "bool": True}}),
        "exactly one value must be specified",
    ),
    (
        "long string attribute",
        lambda: with_device(attributes={"a": {"string": "x" * 65}}),
        "spec.devices[0].attributes[a].string: Too long: may not be more than 64 bytes",
    ),
    (
        "bad attribute name",
        lambda: with_device(attributes={"my-attr": {"int": 1}}),
        "a valid C identifier must start with alphabetic character",
    ),
    (
        "33 attributes",
        lambda: with_device(attributes={f"a{i}": {"int": i} for i in range(33)}),
        "the total number of attributes and capacities must not exceed 32",
    ),
    (
        "bad version",
        lambda: with_device(attributes={"v": {"version": "1.2"}}),
        "must be a string compatible with semver.org spec 2.0.0",
    ),
    (
        "bad taint effect",
        lambda: with_device(taints=[{"key": "k", "effect": "Evict"}]),
        'Unsupported value: "Evict"',
    ),
    (
        "gated list attribute",
        lambda: with_device(attributes={"ids": {"ints": [1, 2]}}),
        "spec.devices[0].attributes[ids]: Invalid value",
    ),
]


@pytest.fixture
async def server() -> AsyncIterator[ApiServer]:
    api = ApiServer(schemas_dir=schemas_dir())
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


@pytest.fixture
async def resources(server: ApiServer) -> AsyncIterator[Any]:
    async with client.ApiClient(client.Configuration(host=server.url)) as api:
        yield client.ResourceV1Api(api)


async def refused(call: Any, *args: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """Run a client call that must fail; return the HTTP status and the Status body."""
    with pytest.raises(ApiException) as caught:
        await call(*args, **kwargs)
    return caught.value.status, json.loads(caught.value.body or b"{}")


async def test_valid_resource_slice_is_accepted_unchanged(resources: Any) -> None:
    """The documented example passes schema and server rules and reads back as written."""
    body = valid_slice()
    created = await resources.create_resource_slice(body)
    stored = created.to_dict()
    assert (
        created.spec.devices[0].attributes["resource.kubernetes.io/pcieRoot"].string == "pci0000:00"
    )
    assert created.spec.devices[0].capacity["memory"].value == "40Gi"
    assert stored["spec"]["pool"] == {"name": "node-1", "generation": 1, "resource_slice_count": 1}


async def test_partitionable_layout_is_accepted(resources: Any) -> None:
    """A counters-only slice and a devices slice consuming those counters are both valid."""
    counters = with_spec(sharedCounters=COUNTERS, devices=None)
    consumer = with_spec(
        devices=[
            {
                "name": "gpu-0",
                "consumesCounters": [
                    {"counterSet": "gpu-0-counters", "counters": {"memory": {"value": "5Gi"}}}
                ],
            }
        ]
    )
    await resources.create_resource_slice(counters)
    created = await resources.create_resource_slice(consumer)
    assert created.spec.devices[0].consumes_counters[0].counter_set == "gpu-0-counters"


@pytest.mark.parametrize(
    ("case", "build", "message"), INVALID_SLICES, ids=[c[0] for c in INVALID_SLICES]
)
async def test_invalid_resource_slice_is_unprocessable(
    resources: Any, case: str, build: Callable[[], Body], message: str
) -> None:
    """Each broken rule is a 422 Invalid whose message names the field and the problem."""
    code, status = await refused(resources.create_resource_slice, build())
    assert (code, status["reason"]) == (422, "Invalid"), case
    assert message in status["message"]
    assert status["details"]["kind"] == "ResourceSlice"
    assert status["details"]["causes"]


async def test_rules_apply_without_schemas() -> None:
    """Without an OpenAPI folder the hand-written server rules still reject bad slices."""
    async with ApiServer() as url, client.ApiClient(client.Configuration(host=url)) as api:
        code, status = await refused(
            client.ResourceV1Api(api).create_resource_slice, with_spec(devices=devices(129))
        )
    assert (code, status["reason"]) == (422, "Invalid")


async def test_node_name_is_immutable(resources: Any) -> None:
    """Moving a slice to another node is 422 field is immutable."""
    created = await resources.create_resource_slice(valid_slice())
    created.spec.node_name = "node-2"
    created.spec.pool.name = "node-1"
    code, status = await refused(resources.replace_resource_slice, created.metadata.name, created)
    assert code == 422
    assert 'spec.nodeName: Invalid value: "node-2": field is immutable' in status["message"]


async def test_wrong_json_type_is_a_bad_request(resources: Any) -> None:
    """A value of the wrong type fails decoding: 400, not 422, as in Go."""
    body = with_spec(pool={"name": "p", "generation": "one", "resourceSliceCount": 1})
    code, status = await refused(resources.create_resource_slice, body)
    assert code == 400
    assert "cannot be handled as a ResourceSlice" in status["message"]


async def test_malformed_quantity_is_a_bad_request(resources: Any) -> None:
    """Capacity values must parse as Kubernetes quantities."""
    code, status = await refused(
        resources.create_resource_slice, with_device(capacity={"memory": {"value": "40 GB"}})
    )
    assert code == 400
    assert "quantities must match the regular expression" in status["message"]


async def test_unknown_fields_are_dropped_with_a_warning(server: ApiServer) -> None:
    """Unknown fields are pruned and reported in a Warning header; Strict validation rejects them."""
    body = with_spec(colour="blue")
    path = f"{server.url}/apis/resource.k8s.io/v1/resourceslices"
    async with aiohttp.ClientSession() as http:
        async with http.post(path, json=body) as response:
            created = await response.json()
            warning = response.headers.get("Warning", "")
        async with http.post(path + "?fieldValidation=Strict", json=body) as strict:
            strict_status = strict.status
    assert "colour" not in created["spec"]
    assert 'unknown field \\"spec.colour\\"' in warning
    assert strict_status == 400


async def test_empty_device_list_is_not_stored(resources: Any) -> None:
    """`devices: []` comes back absent, as after the real server's protobuf round trip."""
    created = await resources.create_resource_slice(with_spec(devices=[]))
    assert created.spec.devices is None


async def test_create_with_a_resource_version_is_refused(resources: Any) -> None:
    """A create carrying metadata.resourceVersion fails in storage, as on the real server."""
    body = valid_slice()
    body["metadata"]["resourceVersion"] = "7"
    code, status = await refused(resources.create_resource_slice, body)
    assert code == 500
    assert "resourceVersion should not be set on objects to be created" in status["message"]


def claim(**request: Any) -> Body:
    exactly = {"deviceClassName": DRIVER, **request}
    return {
        "metadata": {"name": "claim"},
        "spec": {"devices": {"requests": [{"name": "gpu", "exactly": exactly}]}},
    }


async def test_claim_request_rules_are_enforced(resources: Any) -> None:
    """A claim request with count on allocationMode All is 422."""
    code, status = await refused(
        resources.create_namespaced_resource_claim, "default", claim(allocationMode="All", count=2)
    )
    assert code == 422
    assert "must not be specified when allocationMode is 'All'" in status["message"]


async def test_claim_device_status_must_name_an_allocated_device(resources: Any) -> None:
    """status.devices may only describe devices in the claim's allocation."""
    created = (await resources.create_namespaced_resource_claim("default", claim())).to_dict()
    result = {"request": "gpu", "driver": DRIVER, "pool": "node-1", "device": "gpu-0"}
    status = {
        "allocation": {"devices": {"results": [result]}},
        "devices": [{"driver": DRIVER, "pool": "node-1", "device": "gpu-9", "data": {"uuid": "x"}}],
    }
    body = {
        "metadata": {"name": "claim", "resourceVersion": created["metadata"]["resource_version"]},
        "status": status,
    }
    code, status = await refused(
        resources.replace_namespaced_resource_claim_status, "claim", "default", body
    )
    assert code == 422
    assert "must be an allocated device in the claim" in status["message"]


async def test_condition_times_are_stored_to_the_second(resources: Any) -> None:
    """metav1.Time fields are normalised to RFC 3339 seconds in UTC, like Go's encoder."""
    created = (await resources.create_namespaced_resource_claim("default", claim())).to_dict()
    result = {"request": "gpu", "driver": DRIVER, "pool": "node-1", "device": "gpu-0"}
    condition = {
        "type": "Ready",
        "status": "True",
        "reason": "Prepared",
        "message": "",
        "lastTransitionTime": "2026-01-10T14:00:00.123+02:00",
    }
    device_status = {
        "driver": DRIVER,
        "pool": "node-1",
        "device": "gpu-0",
        "conditions": [condition],
    }
    status = {"allocation": {"devices": {"results": [result]}}, "devices": [device_status]}
    body = {
        "metadata": {"name": "claim", "resourceVersion": created["metadata"]["resource_version"]},
        "status": status,
    }
    await resources.replace_namespaced_resource_claim_status("claim", "default", body)
    async with aiohttp.ClientSession() as http:
        url = f"{resources.api_client.configuration.host}/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/claim"
        async with http.get(url) as response:
            stored = await response.json()
    assert (
        stored["status"]["devices"][0]["conditions"][0]["lastTransitionTime"]
        == "2026-01-10T12:00:00Z"
    )
