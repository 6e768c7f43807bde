"""The parts of Kubernetes objects the driver reads, as Structs decoded straight from JSON."""

from __future__ import annotations

from typing import Any

import msgspec


class ObjectMeta(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """metadata, as far as the driver uses it."""

    name: str = ""
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    generation: int = 0
    annotations: dict[str, str] = {}
    labels: dict[str, str] = {}


class OpaqueConfig(msgspec.Struct, frozen=True, kw_only=True):
    """An opaque driver configuration (parameters kept as raw JSON)."""

    driver: str
    parameters: msgspec.Raw = msgspec.Raw(b"{}")


class AllocationConfig(msgspec.Struct, frozen=True, kw_only=True):
    """status.allocation.devices.config[]: FromClass entries first, then FromClaim."""

    source: str = ""
    requests: tuple[str, ...] = ()
    opaque: OpaqueConfig | None = None


class AllocationResult(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """status.allocation.devices.results[]."""

    request: str
    driver: str
    pool: str
    device: str
    admin_access: bool | None = None
    share_id: str | None = msgspec.field(default=None, name="shareID")
    # KEP-5075: what this allocation takes of each capacity of a shared device (quantities).
    consumed_capacity: dict[str, str] = {}


class DeviceAllocation(msgspec.Struct, frozen=True, kw_only=True):
    """status.allocation.devices."""

    results: tuple[AllocationResult, ...] = ()
    config: tuple[AllocationConfig, ...] = ()


class NodeSelectorRequirement(msgspec.Struct, frozen=True, kw_only=True):
    """One matchFields or matchExpressions entry of a node selector term."""

    key: str
    operator: str
    values: tuple[str, ...] = ()


class NodeSelectorTerm(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One term of a node selector; terms are ORed, requirements within a term ANDed."""

    match_fields: tuple[NodeSelectorRequirement, ...] = ()
    match_expressions: tuple[NodeSelectorRequirement, ...] = ()


class NodeSelector(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """status.allocation.nodeSelector: the nodes the allocated devices can be used on."""

    node_selector_terms: tuple[NodeSelectorTerm, ...] = ()


class Allocation(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """status.allocation."""

    devices: DeviceAllocation = DeviceAllocation()
    node_selector: NodeSelector | None = None


class ClaimStatus(msgspec.Struct, frozen=True, kw_only=True):
    """status of a ResourceClaim."""

    allocation: Allocation | None = None


class ResourceClaim(msgspec.Struct, frozen=True, kw_only=True):
    """A ResourceClaim (resource.k8s.io/v1) as the preparer reads it."""

    metadata: ObjectMeta
    status: ClaimStatus = ClaimStatus()


class ListMeta(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A list's metadata: where a watch continues, and the token of the next page."""

    resource_version: str = ""
    continue_: str = msgspec.field(default="", name="continue")


class ClaimList(msgspec.Struct, frozen=True, kw_only=True):
    """A ResourceClaimList (or one page of it)."""

    metadata: ListMeta = ListMeta()
    items: tuple[ResourceClaim, ...] = ()


class Node(msgspec.Struct, frozen=True, kw_only=True):
    """A Node, for owner references."""

    metadata: ObjectMeta


class SliceObject(msgspec.Struct, frozen=True, kw_only=True):
    """A ResourceSlice as stored: metadata typed, spec kept as plain data for comparison."""

    metadata: ObjectMeta
    spec: dict[str, Any] = {}


class SliceList(msgspec.Struct, frozen=True, kw_only=True):
    """A ResourceSliceList."""

    metadata: ObjectMeta = ObjectMeta()
    items: tuple[SliceObject, ...] = ()


class WatchEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a watch stream."""

    type: str
    object: dict[str, Any]
