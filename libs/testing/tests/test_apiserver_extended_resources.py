"""KEP-5004 and KEP-5075 fields the emulator checks beyond the schema: a DeviceClass's
extendedResourceName (dropped while DRAExtendedResource is off), and capacity request
policies whose bounds must fit the capacity."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from hostdev_testing.apiserver import ApiServer
from hostdev_testing.apiserver.gates import EXTENDED_RESOURCE
from hostdev_testing.schemas import schemas_dir

CLASSES = "/apis/resource.k8s.io/v1/deviceclasses"
SLICES = "/apis/resource.k8s.io/v1/resourceslices"


def _device_class(name: str, extended: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selectors": [{"cel": {"expression": 'device.driver == "hostdev.k8s.io"'}}]
    }
    if extended is not None:
        spec["extendedResourceName"] = extended
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": name},
        "spec": spec,
    }


def _slice(capacity: dict[str, Any]) -> dict[str, Any]:
    device = {"name": "udmabuf", "allowMultipleAllocations": True, "capacity": capacity}
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"generateName": "node-1-"},
        "spec": {
            "driver": "hostdev.k8s.io",
            "nodeName": "node-1",
            "pool": {"name": "node-1", "generation": 1, "resourceSliceCount": 1},
            "devices": [device],
        },
    }


async def _send(server: ApiServer, method: str, path: str, body: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, json=body) as response,
    ):
        return response.status, await response.json()


@pytest.fixture
async def api() -> AsyncIterator[ApiServer]:
    server = ApiServer(schemas_dir=schemas_dir())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_device_class_keeps_a_valid_extended_resource_name(api: ApiServer) -> None:
    """`hostdev.k8s.io/kvm` is stored as given."""
    status, answer = await _send(api, "POST", CLASSES, _device_class("kvm", "hostdev.k8s.io/kvm"))
    assert status == 201, answer
    assert answer["spec"]["extendedResourceName"] == "hostdev.k8s.io/kvm"


@pytest.mark.parametrize(
    "name",
    ["kvm", "kubernetes.io/kvm", "deviceclass.resource.kubernetes.io/kvm", "hostdev.k8s.io/k vm"],
)
async def test_device_class_refuses_names_that_are_not_extended_resources(
    api: ApiServer, name: str
) -> None:
    """No domain, a kubernetes.io domain or an invalid name part: 422 on the field."""
    status, answer = await _send(api, "POST", CLASSES, _device_class("bad", name))
    assert status == 422
    assert answer["details"]["causes"][0]["field"] == "spec.extendedResourceName"


async def test_extended_resource_name_is_dropped_while_the_gate_is_off() -> None:
    """A cluster without DRAExtendedResource stores the class without the field."""
    async with (
        ApiServer(schemas_dir=schemas_dir(), feature_gates={EXTENDED_RESOURCE: False}) as url,
        aiohttp.ClientSession() as http,
    ):
        body = _device_class("kvm", "hostdev.k8s.io/kvm")
        async with http.post(url + CLASSES, json=body) as response:
            assert response.status == 201
            answer = await response.json()
    assert "extendedResourceName" not in answer["spec"]


async def test_slots_policy_within_the_capacity_is_accepted(api: ApiServer) -> None:
    """default 1, whole units from 1 up to the value: what the driver publishes."""
    policy = {"default": "1", "validRange": {"min": "1", "max": "4", "step": "1"}}
    status, answer = await _send(
        api, "POST", SLICES, _slice({"slots": {"value": "4", "requestPolicy": policy}})
    )
    assert status == 201, answer


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"default": "5", "validRange": {"min": "5"}}, "validRange.min"),
        ({"default": "1", "validRange": {"min": "2"}}, "validRange.min"),
        ({"default": "2", "validRange": {"min": "1", "max": "8"}}, "validRange.max"),
        ({"default": "3", "validRange": {"min": "1", "max": "2"}}, "validRange.max"),
        ({"default": "1", "validRange": {"min": "1", "step": "4"}}, "validRange.step"),
        ({"default": "2", "validRange": {"min": "1", "step": "2"}}, "validRange.step"),
        ({"validRange": {"min": "1"}}, "default"),
        ({"default": "3", "validValues": ["1", "2"]}, "validValues"),
        ({"default": "1", "validValues": ["2", "1"]}, "validValues[1]"),
        ({"default": "1", "validValues": ["1", "8"]}, "validValues[1]"),
        ({"default": "1", "validValues": ["1"], "validRange": {"min": "1"}}, "requestPolicy"),
    ],
)
async def test_request_policies_outside_the_capacity_are_refused(
    api: ApiServer, policy: dict[str, Any], field: str
) -> None:
    """Bounds above the value, a default outside the range or list or off the step, an
    unsorted list, a missing default, or both kinds at once: 422 naming the field."""
    status, answer = await _send(
        api, "POST", SLICES, _slice({"slots": {"value": "4", "requestPolicy": policy}})
    )
    assert status == 422, answer
    fields = [cause["field"] for cause in answer["details"]["causes"]]
    policy_path = "spec.devices[0].capacity[slots].requestPolicy"
    assert f"{policy_path}.{field}".removesuffix(".requestPolicy") in fields, fields
