"""The emulator with DRAConsumableCapacity off drops that feature's fields on write, as the real
server's strategies do, and keeps them on objects that already use them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from hostdev_testing.apiserver import ApiServer
from hostdev_testing.apiserver.gates import CONSUMABLE_CAPACITY, UnknownFeatureGate, parse
from hostdev_testing.schemas import schemas_dir

SLICES = "/apis/resource.k8s.io/v1/resourceslices"
CLAIMS = "/apis/resource.k8s.io/v1/namespaces/default/resourceclaims"
POLICY = {"default": "1", "validRange": {"min": "1"}}


def shared_slice(node: str = "node-1") -> dict[str, Any]:
    device = {
        "name": "kvm",
        "allowMultipleAllocations": True,
        "capacity": {"slots": {"value": "8", "requestPolicy": POLICY}},
    }
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"generateName": f"{node}-"},
        "spec": {
            "driver": "hostdev.k8s.io",
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": [device],
        },
    }


@pytest.fixture
async def gated() -> AsyncIterator[ApiServer]:
    api = ApiServer(schemas_dir=schemas_dir(), feature_gates={CONSUMABLE_CAPACITY: False})
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


async def _send(server: ApiServer, method: str, path: str, body: Any) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, json=body) as response,
    ):
        assert response.status < 300, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


async def test_slice_create_answers_and_stores_the_stripped_object_when_the_gate_is_off(
    gated: ApiServer,
) -> None:
    """allowMultipleAllocations and requestPolicy are gone from the answer and from storage."""
    answer = await _send(gated, "POST", SLICES, shared_slice())
    (device,) = answer["spec"]["devices"]
    assert device == {"name": "kvm", "capacity": {"slots": {"value": "8"}}}
    stored = gated.get("resourceslices", answer["metadata"]["name"])
    assert stored is not None
    assert stored["spec"]["devices"] == [device]


async def test_dry_run_create_shows_the_stripping_without_storing(gated: ApiServer) -> None:
    """A dry-run create answers what would be stored and stores nothing."""
    answer = await _send(gated, "POST", f"{SLICES}?dryRun=All", shared_slice())
    assert "allowMultipleAllocations" not in answer["spec"]["devices"][0]
    assert gated.objects("resourceslices") == []


async def test_slice_keeps_the_fields_with_the_gate_on() -> None:
    """The default server (gate on, as in 1.36) keeps both fields."""
    async with (
        ApiServer(schemas_dir=schemas_dir()) as url,
        aiohttp.ClientSession() as http,
        http.post(url + SLICES, json=shared_slice()) as response,
    ):
        answer = await response.json()
    device = answer["spec"]["devices"][0]
    assert device["allowMultipleAllocations"] is True
    assert device["capacity"]["slots"]["requestPolicy"] == POLICY


async def test_update_of_a_slice_already_using_the_feature_keeps_it_after_the_gate_is_off() -> None:
    """Turning the gate off never strips stored data: an update keeps the fields, a create drops."""
    server = ApiServer(schemas_dir=schemas_dir())
    await server.start()
    try:
        stored = await _send(server, "POST", SLICES, shared_slice())
        server.gates.set(CONSUMABLE_CAPACITY, False)
        stored["spec"]["pool"]["generation"] = 2
        name = stored["metadata"]["name"]
        updated = await _send(server, "PUT", f"{SLICES}/{name}", stored)
        assert updated["spec"]["devices"][0]["allowMultipleAllocations"] is True
        fresh = await _send(server, "POST", SLICES, shared_slice("node-2"))
        assert "allowMultipleAllocations" not in fresh["spec"]["devices"][0]
    finally:
        await server.stop()


async def test_claim_capacity_request_and_share_id_are_dropped_with_the_gate_off(
    gated: ApiServer,
) -> None:
    """A request's capacity on create and an allocation result's shareID on status are cleared."""
    exactly = {"deviceClassName": "hostdev.k8s.io", "capacity": {"requests": {"slots": "1"}}}
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "c"},
        "spec": {"devices": {"requests": [{"name": "r", "exactly": exactly}]}},
    }
    created = await _send(gated, "POST", CLAIMS, claim)
    assert "capacity" not in created["spec"]["devices"]["requests"][0]["exactly"]
    result = {
        "request": "r",
        "driver": "hostdev.k8s.io",
        "pool": "node-1",
        "device": "kvm",
        "shareID": "4f6c2b0e-8a1d-4b8e-9c53-0f0a3d2e1b77",
    }
    created["status"] = {"allocation": {"devices": {"results": [result]}}}
    written = await _send(gated, "PUT", f"{CLAIMS}/c/status", created)
    assert "shareID" not in written["status"]["allocation"]["devices"]["results"][0]


def test_feature_gates_flag_is_parsed_and_unknown_gates_are_refused() -> None:
    """`--feature-gates` takes Name=bool pairs; a gate the emulator does not model is an error."""
    assert parse("DRAConsumableCapacity=false, ") == {CONSUMABLE_CAPACITY: False}
    with pytest.raises(UnknownFeatureGate):
        parse("DRAConsumableCapacity")
    with pytest.raises(UnknownFeatureGate):
        ApiServer(feature_gates={"NoSuchGate": False})
