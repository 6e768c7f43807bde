"""The one adapter over kubernetes_asyncio; returns msgspec Structs."""

from hostdev_kube.client import Kube
from hostdev_kube.errors import Conflict, Gone, KubeError, NotFound
from hostdev_kube.models import (
    AllocationConfig,
    AllocationResult,
    Node,
    ResourceClaim,
    SliceList,
    SliceObject,
    WatchEvent,
)

__all__ = [
    "AllocationConfig",
    "AllocationResult",
    "Conflict",
    "Gone",
    "Kube",
    "KubeError",
    "Node",
    "NotFound",
    "ResourceClaim",
    "SliceList",
    "SliceObject",
    "WatchEvent",
]
