"""Listing and watching ResourceClaims of every namespace, against the API emulator over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from hostdev_kube import Gone, Kube
from hostdev_testing.apiserver import ApiServer
from hostdev_testing.schemas import schemas_dir


def _claim(name: str) -> dict[str, Any]:
    request = {"name": "r", "exactly": {"deviceClassName": "hostdev.k8s.io"}}
    return {"metadata": {"name": name}, "spec": {"devices": {"requests": [request]}}}


@pytest.fixture
async def api() -> AsyncIterator[ApiServer]:
    server = ApiServer(schemas_dir=schemas_dir(), history=5)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def kube(api: ApiServer) -> AsyncIterator[Kube]:
    client = await Kube.connect(api.url)
    try:
        yield client
    finally:
        await client.close()


async def test_claims_of_every_namespace_are_listed_across_pages(
    api: ApiServer, kube: Kube
) -> None:
    """Three claims in two namespaces, two per page: all three, at the first page's version."""
    api.create("namespaces", {"metadata": {"name": "other"}})
    for name, namespace in (("a", "default"), ("b", "other"), ("c", "other")):
        api.create("resourceclaims", _claim(name), namespace)
    version = str(api.resource_version)
    listed = await kube.list_claims(page_size=2)
    assert sorted((c.metadata.namespace, c.metadata.name) for c in listed.items) == [
        ("default", "a"),
        ("other", "b"),
        ("other", "c"),
    ]
    assert listed.metadata.resource_version == version


async def test_claims_are_listed_one_page_at_a_time_at_the_first_pages_version(
    api: ApiServer, kube: Kube
) -> None:
    """Five claims, two per page: three pages of 2, 2 and 1, every claim once, the first
    page carrying the version to watch from."""
    for name in "abcde":
        api.create("resourceclaims", _claim(name), "default")
    version = str(api.resource_version)
    pages = [page async for page in kube.list_claim_pages(page_size=2)]
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert [c.metadata.name for p in pages for c in p.items] == list("abcde")
    assert pages[0].metadata.resource_version == version
    assert not pages[-1].metadata.continue_


async def test_watch_of_claims_streams_changes_and_says_gone_when_compacted(
    api: ApiServer, kube: Kube
) -> None:
    """A watch from the list's version sees a later deletion in any namespace; one from a
    version the server no longer keeps raises Gone."""
    created = api.create("resourceclaims", _claim("a"), "default")
    start = (await kube.list_claims()).metadata.resource_version
    api.delete("resourceclaims", "a", "default")
    async for event in kube.watch_claims(start, timeout_seconds=5):
        assert (event.type, event.object["metadata"]["uid"]) == (
            "DELETED",
            created["metadata"]["uid"],
        )
        break
    for n in range(6):
        api.create("namespaces", {"metadata": {"name": f"busy-{n}"}})
    with pytest.raises(Gone):
        async for _ in kube.watch_claims(start, timeout_seconds=5):
            pass
