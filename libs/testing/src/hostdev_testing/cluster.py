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
    share_id: str = ""  # set by the scheduler for a device with allowMultipleAllocations
    consumed: tuple[tuple[str, str], ...] = ()  # consumedCapacity: (capacity, quantity)


# KEP-5004: the scheduler marks the claim it creates for a pod's extended resources.
EXTENDED_RESOURCE_CLAIM = "resource.kubernetes.io/extended-resource-claim"


@dataclass(frozen=True, slots=True)
class ExtendedRequest:
    """One container's extended resource served through DRA, as the 1.36 scheduler maps it.

    The request is named `container-<i>-request-<j>`: i the container's index in
    initContainers followed by containers, j the resource's index in the container's
    sorted resource requests (informational upstream; the pod status holds the mapping).
    """

    container: str
    container_index: int
    resource_index: int
    resource: str  # hostdev.k8s.io/kvm
    device_class: str
    devices: tuple[Allocated, ...]  # their `request` is ignored

    @property
    def request(self) -> str:
        return f"container-{self.container_index}-request-{self.resource_index}"


@dataclass(frozen=True, slots=True)
class Claim:
    """A claim as the kubelet names it in a prepare call."""

    namespace: str
    name: str
    uid: str


def _result_fields(result: Allocated) -> dict[str, Any]:
    fields: dict[str, Any] = {"device": result.device}
    if result.admin_access:
        fields["adminAccess"] = True
    if result.share_id:
        fields["shareID"] = result.share_id
    if result.consumed:
        fields["consumedCapacity"] = dict(result.consumed)
    return fields


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
                    **_result_fields(r),
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

    async def extended_resource_claim(
        self, namespace: str, pod: str, pod_uid: str, requests: list[ExtendedRequest]
    ) -> tuple[Claim, dict[str, Any]]:
        """The claim the scheduler creates and allocates for a pod's extended resources
        backed by DRA (KEP-5004, Kubernetes 1.36), and the pod's
        `status.extendedResourceClaimStatus` naming it; the claim is the pod's."""
        claim = {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {
                "generateName": f"{pod}-extended-resources-",
                "namespace": namespace,
                "annotations": {EXTENDED_RESOURCE_CLAIM: "true"},
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "name": pod,
                        "uid": pod_uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "devices": {
                    "requests": [
                        {
                            "name": r.request,
                            "exactly": {
                                "deviceClassName": r.device_class,
                                "allocationMode": "ExactCount",
                                "count": len(r.devices),
                            },
                        }
                        for r in requests
                    ]
                }
            },
        }
        path = f"{RESOURCE_API}/namespaces/{namespace}/resourceclaims"
        created = await self.call("POST", path, claim)
        name = created["metadata"]["name"]
        results = [
            {
                "request": r.request,
                "driver": d.driver or self.driver,
                "pool": d.pool or self.node,
                **_result_fields(d),
            }
            for r in requests
            for d in r.devices
        ]
        created["status"] = {
            "allocation": {"devices": {"results": results}, "nodeSelector": self._node_selector()},
            "reservedFor": [{"resource": "pods", "name": pod, "uid": pod_uid}],
        }
        await self.call("PUT", f"{path}/{name}/status", created)
        status = {
            "resourceClaimName": name,
            "requestMappings": [
                {"containerName": r.container, "resourceName": r.resource, "requestName": r.request}
                for r in requests
            ],
        }
        return Claim(namespace=namespace, name=name, uid=created["metadata"]["uid"]), status

    def _node_selector(self) -> dict[str, Any]:
        term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [self.node]}]}
        return {"nodeSelectorTerms": [term]}

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
