"""Plays the control plane against the API emulator: Nodes, and ResourceClaims as the scheduler leaves them."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

RESOURCE_API = "/apis/resource.k8s.io/v1"


class ApiRequestFailed(RuntimeError):
    """The API server refused a request; carries the status and its body."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: {status} {body}")
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class Allocated:
    """One allocation result the scheduler would write."""

    request: str
    device: str
    driver: str = ""  # the cluster's driver when empty
    pool: str = ""  # the cluster's node when empty
    admin_access: bool = False


@dataclass(frozen=True, slots=True)
class Claim:
    """A claim as the kubelet names it in a prepare call."""

    namespace: str
    name: str
    uid: str


def _exactly(device_class: str, admin: bool) -> dict[str, Any]:
    request: dict[str, Any] = {"deviceClassName": device_class}
    if admin:
        request["adminAccess"] = True
    return request


class Cluster:
    """HTTP calls a scheduler and an admin would make; real HTTP, no client patching."""

    def __init__(self, api_url: str, node: str, driver: str) -> None:
        self.api_url = api_url.rstrip("/")
        self.node = node
        self.driver = driver
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Cluster:
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """One request; raises ApiRequestFailed on a non-2xx answer."""
        assert self._session is not None, "use Cluster as an async context manager"
        async with self._session.request(method, self.api_url + path, json=body) as response:
            text = await response.text()
            if response.status >= 300:
                raise ApiRequestFailed(method, path, response.status, text)
            return await response.json(content_type=None)

    async def create_node(self) -> dict[str, Any]:
        """The Node object slices are owned by."""
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node}}
        result: dict[str, Any] = await self.call("POST", "/api/v1/nodes", node)
        return result

    async def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        """A namespace for claims (the API refuses claims in a namespace that does not exist)."""
        metadata: dict[str, Any] = {"name": name, "labels": labels or {}}
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}
        await self.call("POST", "/api/v1/namespaces", body)

    async def allocated_claim(
        self,
        namespace: str,
        name: str,
        results: list[Allocated],
        *,
        device_class: str = "hostdev.k8s.io",
        annotations: dict[str, str] | None = None,
        namespace_create: bool = False,
        config: dict[str, Any] | None = None,
    ) -> Claim:
        """Create a claim with one request per result, then write its allocation status.

        `config` becomes this driver's opaque parameters for every request, as the
        scheduler copies them from the claim into the allocation.
        """
        if namespace_create:
            await self.create_namespace(namespace)
        requests = sorted({r.request for r in results})
        admin = {r.request for r in results if r.admin_access}
        claim = {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
            "spec": {
                "devices": {
                    "requests": [
                        {"name": r, "exactly": _exactly(device_class, r in admin)} for r in requests
                    ]
                }
            },
        }
        path = f"{RESOURCE_API}/namespaces/{namespace}/resourceclaims"
        created = await self.call("POST", path, claim)
        devices: dict[str, Any] = {
            "results": [
                {
                    "request": r.request,
                    "driver": r.driver or self.driver,
                    "pool": r.pool or self.node,
                    "device": r.device,
                    **({"adminAccess": True} if r.admin_access else {}),
                }
                for r in results
            ]
        }
        if config:
            opaque = {"driver": self.driver, "parameters": config}
            devices["config"] = [{"source": "FromClaim", "opaque": opaque}]
        created["status"] = {
            "allocation": {
                "devices": devices,
                "nodeSelector": {
                    "nodeSelectorTerms": [
                        {
                            "matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": [self.node]}
                            ]
                        }
                    ]
                },
            },
            "reservedFor": [{"resource": "pods", "name": f"{name}-pod", "uid": str(uuid.uuid4())}],
        }
        await self.call("PUT", f"{path}/{name}/status", created)
        return Claim(namespace=namespace, name=name, uid=created["metadata"]["uid"])

    async def slices(self) -> list[dict[str, Any]]:
        """This node's ResourceSlices of this driver."""
        selector = f"spec.nodeName={self.node},spec.driver={self.driver}"
        listed = await self.call("GET", f"{RESOURCE_API}/resourceslices?fieldSelector={selector}")
        items: list[dict[str, Any]] = listed["items"]
        return items

    async def wait_for_slices(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Watch this node's slices until `predicate(current slices)` holds; returns them."""
        assert self._session is not None, "use Cluster as an async context manager"
        selector = f"spec.nodeName={self.node},spec.driver={self.driver}"
        path = f"{RESOURCE_API}/resourceslices?fieldSelector={selector}"
        listed = await self.call("GET", path)
        current = {s["metadata"]["name"]: s for s in listed["items"]}
        if predicate(list(current.values())):
            return list(current.values())
        version = listed["metadata"]["resourceVersion"]
        url = f"{self.api_url}{path}&watch=true&resourceVersion={version}"
        async with asyncio.timeout(timeout), self._session.get(url) as response:
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event["object"]
                if event["type"] == "DELETED":
                    current.pop(obj["metadata"]["name"], None)
                elif event["type"] in ("ADDED", "MODIFIED"):
                    current[obj["metadata"]["name"]] = obj
                if predicate(list(current.values())):
                    return list(current.values())
        raise TimeoutError("slice watch ended before the condition held")

    async def delete_slice(self, name: str) -> None:
        """Delete a slice, as the kubelet's wipe does."""
        await self.call("DELETE", f"{RESOURCE_API}/resourceslices/{name}")
