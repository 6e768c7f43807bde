"""The one adapter to the Kubernetes API (plain aiohttp; kubernetes_asyncio for kubeconfig only)."""

from hostdev_kube.access import Access, AccessError
from hostdev_kube.client import Kube
from hostdev_kube.errors import Conflict, Gone, KubeError, NotFound
from hostdev_kube.models import (
    AllocationConfig,
    AllocationResult,
    ClaimList,
    Node,
    ResourceClaim,
    SliceList,
    SliceObject,
    WatchEvent,
)

__all__ = [
    "Access",
    "AccessError",
    "AllocationConfig",
    "AllocationResult",
    "ClaimList",
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
