"""The API emulator's REST behaviour, driven through the real kubernetes_asyncio client."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from hostdev_testing.apiserver import ApiServer
from hostdev_testing.schemas import schemas_dir

DRIVER = "gpu.example.com"


def slice_body(node: str = "node-1", driver: str = DRIVER, devices: int = 1) -> dict[str, Any]:
    devices_list = [
        {"name": f"gpu-{i}", "attributes": {"index": {"int": i}}} for i in range(devices)
    ]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"generateName": f"{node}-{driver}-", "labels": {"node": node}},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": devices_list,
        },
    }


def claim_body(name: str = "claim") -> dict[str, Any]:
    request = {"name": "gpu", "exactly": {"deviceClassName": DRIVER}}
    return {"metadata": {"name": name}, "spec": {"devices": {"requests": [request]}}}


def allocation(node: str = "node-1") -> dict[str, Any]:
    result = {"request": "gpu", "driver": DRIVER, "pool": node, "device": "gpu-0"}
    return {"devices": {"results": [result]}}


@pytest.fixture
async def server() -> AsyncIterator[ApiServer]:
    api = ApiServer(schemas_dir=schemas_dir())
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


@pytest.fixture
async def kube(server: ApiServer) -> AsyncIterator[Any]:
    async with client.ApiClient(client.Configuration(host=server.url)) as api:
        yield api


@pytest.fixture
def resources(kube: Any) -> Any:
    return client.ResourceV1Api(kube)


@pytest.fixture
def core(kube: Any) -> Any:
    return client.CoreV1Api(kube)


async def refused(call: Any, *args: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """Run a client call that must fail; return the HTTP status and the Status body."""
    with pytest.raises(ApiException) as caught:
        await call(*args, **kwargs)
    return caught.value.status, json.loads(caught.value.body or b"{}")


async def test_create_with_generate_name_assigns_name_uid_and_resource_version(
    resources: Any,
) -> None:
    """generateName gets five random characters; uid, resourceVersion and generation are set."""
    created = await resources.create_resource_slice(slice_body())
    meta = created.metadata
    assert meta.name.startswith("node-1-gpu.example.com-")
    assert len(meta.name) == len("node-1-gpu.example.com-") + 5
    assert len(meta.uid) == 36
    assert int(meta.resource_version) > 0
    assert meta.generation == 1
    assert meta.creation_timestamp is not None


async def test_get_and_list_return_the_stored_object(resources: Any) -> None:
    """A created object comes back from get and list with the same resourceVersion."""
    created = await resources.create_resource_slice(slice_body())
    fetched = await resources.read_resource_slice(created.metadata.name)
    listed = await resources.list_resource_slice()
    assert fetched.metadata.resource_version == created.metadata.resource_version
    assert [s.metadata.name for s in listed.items] == [created.metadata.name]
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)


async def test_list_items_omit_kind_and_api_version_like_typed_lists(server: ApiServer) -> None:
    """The real server leaves TypeMeta out of the items of a built-in type's list."""
    server.create("resourceslices", slice_body())
    url = f"{server.url}/apis/resource.k8s.io/v1/resourceslices"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        listed = await response.json()
    assert listed["kind"] == "ResourceSliceList"
    assert listed["apiVersion"] == "resource.k8s.io/v1"
    assert "kind" not in listed["items"][0]


async def test_get_missing_object_is_a_not_found_status(resources: Any) -> None:
    """A missing object answers 404 with a NotFound Status naming the resource."""
    code, status = await refused(resources.read_resource_slice, "absent")
    assert code == 404
    assert status["reason"] == "NotFound"
    assert status["message"] == 'resourceslices.resource.k8s.io "absent" not found'
    assert status["details"] == {
        "name": "absent",
        "group": "resource.k8s.io",
        "kind": "resourceslices",
    }


async def test_create_with_a_taken_name_is_already_exists(resources: Any) -> None:
    """A second create with the same name is 409 AlreadyExists."""
    body = slice_body()
    body["metadata"] = {"name": "fixed"}
    await resources.create_resource_slice(body)
    code, status = await refused(resources.create_resource_slice, body)
    assert (code, status["reason"]) == (409, "AlreadyExists")


async def test_update_with_stale_resource_version_is_a_conflict(resources: Any) -> None:
    """A PUT carrying an old resourceVersion is 409 Conflict."""
    created = await resources.create_resource_slice(slice_body())
    created.spec.pool.generation = 2
    await resources.replace_resource_slice(created.metadata.name, created)
    code, status = await refused(resources.replace_resource_slice, created.metadata.name, created)
    assert (code, status["reason"]) == (409, "Conflict")


async def test_update_without_resource_version_is_unconditional(resources: Any) -> None:
    """These types allow unconditional updates, as their upstream strategies do."""
    created = await resources.create_resource_slice(slice_body())
    created.metadata.resource_version = None
    created.spec.pool.generation = 5
    updated = await resources.replace_resource_slice(created.metadata.name, created)
    assert updated.spec.pool.generation == 5


async def test_spec_change_bumps_generation_but_label_change_does_not(resources: Any) -> None:
    """metadata.generation counts spec changes only."""
    created = await resources.create_resource_slice(slice_body())
    created.metadata.labels["extra"] = "yes"
    relabelled = await resources.replace_resource_slice(created.metadata.name, created)
    relabelled.spec.pool.generation = 2
    respecced = await resources.replace_resource_slice(created.metadata.name, relabelled)
    assert (relabelled.metadata.generation, respecced.metadata.generation) == (1, 2)


async def test_update_that_changes_nothing_keeps_the_resource_version(resources: Any) -> None:
    """A no-op update is not written: same resourceVersion, no watch event."""
    created = await resources.create_resource_slice(slice_body())
    again = await resources.replace_resource_slice(created.metadata.name, created)
    assert again.metadata.resource_version == created.metadata.resource_version


async def test_field_selector_on_node_name_filters_the_list(resources: Any) -> None:
    """spec.nodeName= selects one node's slices."""
    await resources.create_resource_slice(slice_body("node-1"))
    await resources.create_resource_slice(slice_body("node-2"))
    listed = await resources.list_resource_slice(field_selector="spec.nodeName=node-2")
    assert [s.spec.node_name for s in listed.items] == ["node-2"]


async def test_field_selector_on_driver_filters_the_list(resources: Any) -> None:
    """spec.driver= and != select by driver, combined with commas."""
    await resources.create_resource_slice(slice_body(driver="a.example.com"))
    await resources.create_resource_slice(slice_body(driver="b.example.com"))
    listed = await resources.list_resource_slice(
        field_selector="spec.driver!=a.example.com,spec.nodeName=node-1"
    )
    assert [s.spec.driver for s in listed.items] == ["b.example.com"]


async def test_unsupported_field_label_is_a_bad_request(resources: Any) -> None:
    """ResourceSlice only indexes metadata.name, spec.nodeName and spec.driver."""
    code, status = await refused(
        resources.list_resource_slice, field_selector="spec.pool.name=node-1"
    )
    assert code == 400
    assert "field label not supported" in status["message"]


async def test_list_pages_with_limit_and_continue(resources: Any) -> None:
    """limit cuts the list and continue resumes after the last item returned."""
    for node in ("n1", "n2", "n3"):
        await resources.create_resource_slice(slice_body(node))
    first = await resources.list_resource_slice(limit=2)
    rest = await resources.list_resource_slice(limit=2, _continue=first.metadata._continue)
    assert (len(first.items), first.metadata.remaining_item_count) == (2, 1)
    assert len(rest.items) == 1
    assert rest.metadata._continue is None


async def test_status_update_changes_only_status(resources: Any) -> None:
    """PUT to /status ignores spec changes; PUT to the object ignores status changes."""
    created = await resources.create_namespaced_resource_claim("default", claim_body())
    created.status = {"allocation": allocation()}
    created.spec.devices.requests[0].name = "renamed"
    allocated = await resources.replace_namespaced_resource_claim_status(
        "claim", "default", created
    )
    device = allocated.status.allocation.devices.results[0].device
    allocated.status.allocation = None
    unchanged = await resources.replace_namespaced_resource_claim("claim", "default", allocated)
    assert allocated.spec.devices.requests[0].name == "gpu"
    assert device == "gpu-0"
    assert unchanged.status.allocation is not None


async def test_claim_spec_is_immutable(resources: Any) -> None:
    """A changed ResourceClaim spec is 422 field is immutable."""
    created = await resources.create_namespaced_resource_claim("default", claim_body())
    created.spec.devices.requests[0].name = "renamed"
    code, status = await refused(
        resources.replace_namespaced_resource_claim, "claim", "default", created
    )
    assert code == 422
    assert "spec: Invalid value" in status["message"]
    assert "field is immutable" in status["message"]


async def test_claim_gets_server_side_defaults(resources: Any) -> None:
    """allocationMode defaults to ExactCount with count 1, and status starts empty."""
    created = await resources.create_namespaced_resource_claim("default", claim_body())
    exactly = created.spec.devices.requests[0].exactly
    assert (exactly.allocation_mode, exactly.count) == ("ExactCount", 1)


async def test_claim_in_a_missing_namespace_is_not_found(resources: Any) -> None:
    """Creating into a namespace that does not exist is 404, as namespace lifecycle admission does."""
    code, status = await refused(
        resources.create_namespaced_resource_claim, "nowhere", claim_body()
    )
    assert code == 404
    assert status["message"] == 'namespaces "nowhere" not found'


async def test_patch_and_deletecollection_are_refused_as_not_served(resources: Any) -> None:
    """The emulator serves what the driver calls; a driver that starts patching or deleting
    collections fails here loudly (405) instead of passing on untested emulation."""
    created = await resources.create_resource_slice(slice_body())
    patched = await refused(resources.patch_resource_slice, created.metadata.name, {})
    wiped = await refused(resources.delete_collection_resource_slice)
    assert (patched[0], patched[1]["reason"]) == (405, "MethodNotAllowed")
    assert (wiped[0], wiped[1]["reason"]) == (405, "MethodNotAllowed")


async def test_delete_returns_the_deleted_slice(resources: Any) -> None:
    """resource.k8s.io deletes answer with the object; a second delete is 404."""
    created = await resources.create_resource_slice(slice_body())
    deleted = await resources.delete_resource_slice(created.metadata.name)
    code, status = await refused(resources.delete_resource_slice, created.metadata.name)
    assert deleted.metadata.uid == created.metadata.uid
    assert (code, status["reason"]) == (404, "NotFound")


async def test_delete_with_wrong_uid_precondition_is_a_conflict(resources: Any) -> None:
    """Delete preconditions on uid are checked."""
    created = await resources.create_resource_slice(slice_body())
    options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="other"))
    code, status = await refused(
        resources.delete_resource_slice, created.metadata.name, body=options
    )
    assert code == 409
    assert "Precondition failed: UID in precondition: other" in status["message"]


async def test_finalizers_hold_deletion_until_removed(resources: Any, server: ApiServer) -> None:
    """Delete only marks an object with finalizers; removing the last finalizer deletes it."""
    body = claim_body()
    body["metadata"]["finalizers"] = ["resource.kubernetes.io/delete-protection"]
    await resources.create_namespaced_resource_claim("default", body)
    marked = await resources.delete_namespaced_resource_claim("claim", "default")
    marked.metadata.finalizers = []
    await resources.replace_namespaced_resource_claim("claim", "default", marked)
    assert marked.metadata.deletion_timestamp is not None
    assert server.get("resourceclaims", "claim", "default") is None


async def test_owner_references_are_stored_as_given(resources: Any) -> None:
    """ownerReferences round-trip unchanged; there is no garbage collector."""
    body = slice_body()
    owner = {
        "apiVersion": "v1",
        "kind": "Node",
        "name": "node-1",
        "uid": "6f1f4a53",
        "controller": True,
    }
    body["metadata"]["ownerReferences"] = [owner]
    created = await resources.create_resource_slice(body)
    assert created.metadata.owner_references[0].to_dict()["uid"] == "6f1f4a53"
    assert created.metadata.owner_references[0].kind == "Node"


async def test_nodes_can_be_created_read_listed_and_deleted(core: Any) -> None:
    """Core v1 Nodes are served; their delete answers with a Success Status."""
    await core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="node-1")))
    fetched = await core.read_node("node-1")
    listed = await core.list_node()
    status = await core.delete_node("node-1")
    assert fetched.metadata.name == "node-1"
    assert [n.metadata.name for n in listed.items] == ["node-1"]
    assert status.status == "Success"


async def test_discovery_lists_the_served_resources(kube: Any) -> None:
    """/apis/resource.k8s.io/v1 lists the four resources and the claim status subresource."""
    found = await client.ResourceV1Api(kube).get_api_resources()
    names = sorted(r.name for r in found.resources)
    version = await client.VersionApi(kube).get_code()
    assert names == [
        "deviceclasses",
        "resourceclaims",
        "resourceclaims/status",
        "resourceclaimtemplates",
        "resourceslices",
    ]
    assert version.minor == "36"


async def test_seeded_objects_are_visible_over_http(server: ApiServer, resources: Any) -> None:
    """Objects seeded through the ApiServer API are served like created ones."""
    seeded = server.create("deviceclasses", {"metadata": {"name": DRIVER}, "spec": {}})
    fetched = await resources.read_device_class(DRIVER)
    assert fetched.metadata.uid == seeded["metadata"]["uid"]


async def test_process_mode_writes_its_url_file_and_serves(tmp_path: Path) -> None:
    """`python -m hostdev_testing.apiserver` writes the URL file, serves, and exits on SIGTERM."""
    url_file = tmp_path / "url"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hostdev_testing.apiserver",
        "--schemas-dir",
        str(schemas_dir()),
        "--url-file",
        str(url_file),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        printed = (await process.stdout.readline()).decode().strip()
        url = url_file.read_text().strip()
        async with client.ApiClient(client.Configuration(host=url)) as api:
            listed = await client.CoreV1Api(api).list_namespace()
    finally:
        process.send_signal(signal.SIGTERM)
        code = await process.wait()
    assert url == printed
    assert "default" in [n.metadata.name for n in listed.items]
    assert code == 0
