"""Release device-plugin allocations that no pod uses, as the kubelet's pod-resources API reports.

The device plugin API has no "free" call. An ID is released only after two checks
in a row found it unused, so an allocation the kubelet has just made but not yet
recorded is never taken away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from hostdev_bus import Bus, BusError
from hostdev_events import subjects
from hostdev_events.dp import Allocations, AllocationsReleased, ListAllocations, ReleaseAllocations
from hostdev_kubelet_pb.podresources.v1 import api_pb2 as pb
from hostdev_kubelet_pb.podresources.v1 import api_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Reconciler:
    """Compares prepared device-plugin IDs with what pods use, per resource."""

    node: str
    bus: Bus
    socket: Path
    resources: tuple[str, ...]
    suspects: dict[str, set[str]] = field(default_factory=dict)

    async def in_use(self) -> dict[str, set[str]]:
        """Device IDs each resource has assigned to some container."""
        async with grpc.aio.insecure_channel(f"unix:{self.socket}") as channel:
            listed = await pb_grpc.PodResourcesListerStub(channel).List(
                pb.ListPodResourcesRequest(), timeout=10
            )
        used: dict[str, set[str]] = {}
        for pod in listed.pod_resources:
            for container in pod.containers:
                for devices in container.devices:
                    used.setdefault(devices.resource_name, set()).update(devices.device_ids)
        return used

    async def once(self) -> dict[str, tuple[str, ...]]:
        """One pass; returns what was released per resource."""
        if not self.socket.exists() or not self.resources:
            return {}
        used = await self.in_use()
        released: dict[str, tuple[str, ...]] = {}
        for resource in self.resources:
            prepared = await self.bus.request(
                subjects.dp_list(self.node), ListAllocations(resource=resource), Allocations, 5.0
            )
            unused = set(prepared.ids) - used.get(resource, set())
            stale = tuple(sorted(unused & self.suspects.get(resource, set())))
            self.suspects[resource] = unused - set(stale)
            if stale:
                reply = await self.bus.request(
                    subjects.dp_release(self.node),
                    ReleaseAllocations(resource=resource, ids=stale, timeout_ms=30_000),
                    AllocationsReleased,
                    30.0,
                )
                released[resource] = tuple(i for i in stale if not reply.errors.get(i))
                logger.info(
                    "released unused allocations", extra={"resource": resource, "ids": stale}
                )
        return released

    async def run(self, stopping: asyncio.Event, period: float) -> None:
        """Reconcile every `period` seconds until stopping; failures wait for the next pass."""
        while not stopping.is_set():
            try:
                await self.once()
            except (grpc.aio.AioRpcError, BusError) as err:
                logger.warning("pod-resources reconcile failed", extra={"error": str(err)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), period)
