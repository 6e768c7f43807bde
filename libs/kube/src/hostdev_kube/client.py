"""The one adapter to the Kubernetes API: plain HTTP with aiohttp, JSON decoded into Structs."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import aiohttp
import msgspec

from hostdev_events import killpoints
from hostdev_kube.access import Access, find
from hostdev_kube.errors import Conflict, Gone, KubeError, NotFound
from hostdev_kube.models import (
    ClaimList,
    ListMeta,
    Node,
    ResourceClaim,
    SliceList,
    SliceObject,
    WatchEvent,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

_ERRORS: dict[int, type[KubeError]] = {404: NotFound, 409: Conflict, 410: Gone}
RESOURCE = "/apis/resource.k8s.io/v1"
SLICES = f"{RESOURCE}/resourceslices"
CLAIMS = f"{RESOURCE}/resourceclaims"
_encoder = msgspec.json.Encoder()


def _status_error(code: int, reason: str, body: bytes | str | None) -> KubeError:
    message = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    try:
        status = json.loads(body or b"")
        reason, message = str(status.get("reason", reason)), str(status.get("message", message))
    except (TypeError, ValueError, AttributeError):
        pass  # not a Status body (a proxy's error page, say): keep the HTTP reason
    # JSON may escape lone surrogates, which no UTF-8 encoder (NATS, gRPC) would carry on.
    return _ERRORS.get(code, KubeError)(code, _utf8(reason), _utf8(message))


def _utf8(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


def _selector(node: str, driver: str) -> str:
    return f"spec.nodeName={node},spec.driver={driver}"


class Kube:
    """What the driver does with the API server; every answer is a Struct."""

    def __init__(self, access: Access, session: aiohttp.ClientSession) -> None:
        self._access = access
        self._session = session

    @classmethod
    async def connect(cls, url: str = "") -> Kube:
        """`url` for a plain endpoint; otherwise in-cluster, then kubeconfig."""
        access = await find(url)
        connector = aiohttp.TCPConnector(ssl=access.ssl_context or False, limit=64)
        # trust_env off: proxy variables would be looked up again on every request.
        return cls(access, aiohttp.ClientSession(connector=connector, read_bufsize=2**21))

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._session.close()

    async def _request(self, kind: type[T], method: str, path: str, body: Any = None) -> T:
        headers = await self._access.headers()
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = _encoder.encode(body)
        try:
            async with self._session.request(
                method,
                self._access.host + path,
                headers=headers,
                data=data,
                server_hostname=self._access.server_hostname,
            ) as response:
                payload = await response.read()
                status, reason = response.status, response.reason or ""
        except aiohttp.ClientError as err:
            raise KubeError(0, "Unreachable", str(err)) from err
        killpoints.reached(killpoints.API_CALL)
        if status >= 400:
            raise _status_error(status, reason, payload)
        try:
            return msgspec.json.decode(payload, type=kind)
        except (msgspec.DecodeError, msgspec.ValidationError) as err:
            # A proxy's page, a truncated body, an object of another shape: typed, not a crash.
            raise KubeError(status, "MalformedAnswer", f"{method} {path}: {err}") from err

    async def get_claim(self, namespace: str, name: str) -> ResourceClaim:
        """Read a ResourceClaim (resource.k8s.io/v1)."""
        path = f"{RESOURCE}/namespaces/{quote(namespace)}/resourceclaims/{quote(name)}"
        return await self._request(ResourceClaim, "GET", path)

    async def get_claim_object(self, namespace: str, name: str) -> dict[str, Any]:
        """A ResourceClaim as the server has it, every field kept, to write its status back."""
        path = f"{RESOURCE}/namespaces/{quote(namespace)}/resourceclaims/{quote(name)}"
        found: dict[str, Any] = await self._request(dict, "GET", path)
        return found

    async def replace_claim_status(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        """PUT a claim's status; raises Conflict when its resourceVersion is stale."""
        path = f"{RESOURCE}/namespaces/{quote(namespace)}/resourceclaims/{quote(name)}/status"
        await self._request(msgspec.Raw, "PUT", path, body)

    async def get_node(self, name: str) -> Node:
        """Read a Node."""
        return await self._request(Node, "GET", f"/api/v1/nodes/{quote(name)}")

    async def list_slices(self, node: str, driver: str) -> SliceList:
        """The ResourceSlices of one node and driver."""
        query = urlencode({"fieldSelector": _selector(node, driver)})
        return await self._request(SliceList, "GET", f"{SLICES}?{query}")

    async def create_slice(self, body: dict[str, Any], *, dry_run: bool = False) -> SliceObject:
        """Create a ResourceSlice (generateName allowed); `dry_run` stores nothing but answers
        what would be stored, with the fields of disabled features dropped."""
        path = f"{SLICES}?dryRun=All" if dry_run else SLICES
        return await self._request(SliceObject, "POST", path, body)

    async def replace_slice(self, name: str, body: dict[str, Any]) -> SliceObject:
        """Update a ResourceSlice; raises Conflict when its resourceVersion is stale."""
        return await self._request(SliceObject, "PUT", f"{SLICES}/{quote(name)}", body)

    async def delete_slice(self, name: str) -> None:
        """Delete a ResourceSlice; one already gone is fine."""
        try:
            await self._request(msgspec.Raw, "DELETE", f"{SLICES}/{quote(name)}")
        except NotFound:
            return

    async def watch_slices(
        self, node: str, driver: str, resource_version: str, timeout_seconds: int = 300
    ) -> AsyncIterator[WatchEvent]:
        """Changes to this node's slices after `resource_version`; ends on timeout."""
        query = {"fieldSelector": _selector(node, driver)}
        async for event in self._watch(SLICES, query, resource_version, timeout_seconds):
            yield event

    async def list_claims(self, page_size: int = 500) -> ClaimList:
        """Every ResourceClaim of the cluster, with the list's resourceVersion to watch from.

        Read in pages (see list_claim_pages), returned as one list.
        """
        items: list[ResourceClaim] = []
        version = ""
        async for page in self.list_claim_pages(page_size):
            version = version or page.metadata.resource_version
            items.extend(page.items)
        return ClaimList(metadata=ListMeta(resource_version=version), items=tuple(items))

    async def list_claim_pages(self, page_size: int = 500) -> AsyncIterator[ClaimList]:
        """Every ResourceClaim of the cluster, one page of at most `page_size` at a time, so
        a caller that keeps only part of each claim never holds the whole list.

        The pages are one consistent snapshot, at the first page's resourceVersion (where a
        watch continues); raises Gone when the snapshot expired between pages, as a list
        then starts over.
        """
        query = {"limit": str(page_size)}
        while True:
            page = await self._request(ClaimList, "GET", f"{CLAIMS}?{urlencode(query)}")
            yield page
            if not page.metadata.continue_:
                return
            query["continue"] = page.metadata.continue_

    async def watch_claims(
        self, resource_version: str, timeout_seconds: int = 300
    ) -> AsyncIterator[WatchEvent]:
        """Changes to ResourceClaims of every namespace after `resource_version`; ends on
        timeout. Raises Gone when that version is too old (list again), KubeError otherwise."""
        async for event in self._watch(CLAIMS, {}, resource_version, timeout_seconds):
            yield event

    async def _watch(
        self, path: str, query: dict[str, str], resource_version: str, timeout_seconds: int
    ) -> AsyncIterator[WatchEvent]:
        encoded = urlencode(
            {
                **query,
                "resourceVersion": resource_version,
                "watch": "true",
                "timeoutSeconds": str(timeout_seconds),
                "allowWatchBookmarks": "true",
            }
        )
        headers = await self._access.headers()
        try:
            async with self._session.get(
                f"{self._access.host}{path}?{encoded}",
                headers=headers,
                server_hostname=self._access.server_hostname,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30),
            ) as response:
                if response.status >= 400:
                    raise _status_error(
                        response.status, response.reason or "", await response.read()
                    )
                async for line in response.content:
                    if not line.strip():
                        continue
                    event = msgspec.json.decode(line, type=WatchEvent)
                    if event.type == "ERROR":
                        code = int(event.object.get("code", 0))
                        raise _ERRORS.get(code, KubeError)(
                            code,
                            str(event.object.get("reason", "")),
                            str(event.object.get("message")),
                        )
                    yield event
        except aiohttp.ClientError as err:
            raise KubeError(0, "Unreachable", str(err)) from err
