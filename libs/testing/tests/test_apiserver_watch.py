"""Watch streams of the API emulator, consumed by kubernetes_asyncio's Watch and raw HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from hostdev_testing.apiserver import ApiServer
from hostdev_testing.schemas import schemas_dir

DRIVER = "gpu.example.com"


def slice_body(name: str, node: str = "node-1") -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "driver": DRIVER,
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": [{"name": "gpu-0"}],
        },
    }


@pytest.fixture
async def server() -> AsyncIterator[ApiServer]:
    api = ApiServer(schemas_dir=schemas_dir(), history=20, bookmark_interval=0.05)
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


@pytest.fixture
async def resources(server: ApiServer) -> AsyncIterator[Any]:
    async with client.ApiClient(client.Configuration(host=server.url)) as api:
        yield client.ResourceV1Api(api)


def moved(server: ApiServer, name: str, generation: int) -> dict[str, Any]:
    current = server.get("resourceslices", name)
    assert current is not None
    current["spec"]["pool"]["generation"] = generation
    return server.update("resourceslices", current)


async def test_watch_from_a_resource_version_replays_later_changes_then_streams_live(
    server: ApiServer, resources: Any
) -> None:
    """Changes after the given resourceVersion arrive in order, then new ones as they happen."""
    start = (await resources.list_resource_slice()).metadata.resource_version
    server.create("resourceslices", slice_body("a"))
    moved(server, "a", 2)
    server.delete("resourceslices", "a")
    seen: list[tuple[str, str]] = []
    async with watch.Watch() as stream:
        async for event in stream.stream(
            resources.list_resource_slice, resource_version=start, timeout_seconds=30
        ):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 3:
                server.create("resourceslices", slice_body("b"))
            if len(seen) == 4:
                break
    assert seen == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a"), ("ADDED", "b")]


async def test_deleted_event_carries_the_deletion_revision(
    server: ApiServer, resources: Any
) -> None:
    """The DELETED object's resourceVersion is the revision of the delete, as etcd reports it."""
    created = server.create("resourceslices", slice_body("a"))
    server.delete("resourceslices", "a")
    async with watch.Watch() as stream:
        version = created["metadata"]["resourceVersion"]
        async for event in stream.stream(
            resources.list_resource_slice, resource_version=version, timeout_seconds=30
        ):
            deleted = event
            break
    assert deleted["type"] == "DELETED"
    assert deleted["object"].metadata.resource_version == str(server.resource_version)


async def test_watch_from_a_compacted_resource_version_is_gone(
    server: ApiServer, resources: Any
) -> None:
    """Once the event log has dropped a revision, resuming from it fails with 410 Expired."""
    server.create("resourceslices", slice_body("a"))
    for generation in range(2, 30):
        moved(server, "a", generation)

    async def resume() -> None:
        async with watch.Watch() as stream:
            async for _ in stream.stream(
                resources.list_resource_slice, resource_version="2", timeout_seconds=30
            ):
                pass

    with pytest.raises(ApiException) as caught:
        await resume()
    assert caught.value.status == 410
    assert "Expired: too old resource version" in str(caught.value.reason)


async def test_watch_without_resource_version_starts_with_current_objects(
    server: ApiServer, resources: Any
) -> None:
    """With no resourceVersion the stream opens with synthetic ADDED events for what exists."""
    server.create("resourceslices", slice_body("a"))
    server.create("resourceslices", slice_body("b", node="node-2"))
    async with watch.Watch() as stream:
        async for event in stream.stream(
            resources.list_resource_slice, field_selector="spec.nodeName=node-2", timeout_seconds=30
        ):
            first = event
            break
    assert (first["type"], first["object"].metadata.name) == ("ADDED", "b")


async def test_timeout_seconds_ends_the_stream(server: ApiServer, resources: Any) -> None:
    """The server closes a watch after timeoutSeconds; the client's iteration then ends."""
    async with watch.Watch() as stream:
        events = [e async for e in stream.stream(resources.list_resource_slice, timeout_seconds=1)]
    assert events == []


async def test_stopping_the_server_ends_open_watches(server: ApiServer, resources: Any) -> None:
    """stop() finishes every stream cleanly instead of leaving clients hanging."""
    server.create("resourceslices", slice_body("a"))
    seen = []
    async with watch.Watch() as stream:
        async for event in stream.stream(resources.list_resource_slice, timeout_seconds=60):
            seen.append(event["type"])
            await server.stop()
    assert seen == ["ADDED"]


async def test_bookmarks_carry_the_current_resource_version(server: ApiServer) -> None:
    """allowWatchBookmarks brings BOOKMARK events whose object holds only a resourceVersion."""
    url = f"{server.url}/apis/resource.k8s.io/v1/resourceslices?watch=1&allowWatchBookmarks=true&timeoutSeconds=5"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        event = json.loads(await response.content.readline())
    assert event["type"] == "BOOKMARK"
    assert event["object"]["metadata"] == {"resourceVersion": str(server.resource_version)}
    assert event["object"]["kind"] == "ResourceSlice"


async def test_watch_from_a_future_resource_version_is_rejected(
    server: ApiServer, resources: Any
) -> None:
    """A resourceVersion newer than the server's is a 504 "Too large resource version"."""
    future = str(server.resource_version + 100)
    with pytest.raises(ApiException) as caught:
        await resources.list_resource_slice(watch=True, resource_version=future, timeout_seconds=1)
    assert caught.value.status == 504
    assert "Too large resource version" in str(caught.value.body)


async def test_an_outage_ends_watches_refuses_connections_and_keeps_history(
    server: ApiServer, resources: Any
) -> None:
    """`go_down` ends live watches and refuses new connections; `come_back` serves the same
    address with the same objects, and a watch resumes from its resourceVersion across the
    outage, seeing what changed meanwhile."""
    start = (await resources.list_resource_slice()).metadata.resource_version
    url = server.url
    async with aiohttp.ClientSession() as http:
        query = f"watch=true&resourceVersion={start}&timeoutSeconds=30"
        async with http.get(f"{url}/apis/resource.k8s.io/v1/resourceslices?{query}") as live:
            await server.go_down()
            assert await live.read() == b""  # ended cleanly, nothing sent
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"{url}/healthz")
        server.create("resourceslices", slice_body("during"))
        await server.come_back()
        assert server.url == url
        async with http.get(f"{url}/apis/resource.k8s.io/v1/resourceslices?{query}") as resumed:
            first = json.loads(await resumed.content.readline())
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "during")
