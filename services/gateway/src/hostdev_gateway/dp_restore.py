"""Device-plugin allocations pods still hold, rebuilt before their IDs are reported healthy.

The kubelet calls Allocate once per container and keeps the answer in its checkpoint; it
never calls it again for a running pod, not after our restart and not after a node reboot,
which empties the CDI directory (tmpfs) and resets vfio bindings, mdevs and VF settings.
A container restart would then find no CDI spec, or a device on the wrong driver. So each
time the gateway (re)connects to the kubelet, before it registers, it asks pod-resources
which IDs pods hold, and has the preparer rebuild them (`dp.restore`: a no-op for an ID
whose work is still in place, so a restart without a reboot changes nothing).

Until the preparer confirms an ID, ListAndWatch reports it Unhealthy instead of holding back
the whole first answer. The kubelet tolerates that best: it learns the resource's full size
at once and keeps admitting pods on the other IDs, while an ID assigned to a running pod is
not handed out anyway, and Unhealthy is what the pod's allocatedResourcesStatus should show
while its device is not usable. A held-back answer would keep the whole resource at zero
capacity for every pod until the slowest rebuild finished, or for good if the preparer is
down; and the kubelet gives ListAndWatch no deadline that would tell it something is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc

from hostdev_bus import Bus, BusError
from hostdev_devconfig import ResourceSpec
from hostdev_events import subjects
from hostdev_events.dp import (
    Allocations,
    AllocationsRestored,
    DpAllocation,
    ListAllocations,
    RestoreAllocations,
)
from hostdev_events.service import ServiceReady
from hostdev_gateway import dp_model
from hostdev_gateway.feed import Feed

logger = logging.getLogger(__name__)

RESTORE_TIMEOUT = 60.0  # rebinding a few functions to vfio-pci takes seconds at most
PREPARER = "preparer"

InUse = Callable[[], Awaitable[dict[str, set[str]]]]


@dataclass(slots=True)
class Restorer:
    """Which IDs wait for their rebuild, and the loop that has the preparer rebuild them."""

    node: str
    bus: Bus
    feed: Feed
    in_use: InUse  # pod-resources: the IDs each resource has assigned to some container
    specs: tuple[ResourceSpec, ...]
    pending: dict[str, frozenset[str]] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Set when a held ID's device was not in the inventory: the next inventory change retries.
    short_of_inventory: bool = False

    def restoring(self, resource: str) -> frozenset[str]:
        """IDs of `resource` that pods hold and whose state is not confirmed yet."""
        return self.pending.get(resource, frozenset())

    async def begin(self) -> None:
        """Hold back every ID pods hold until it is rebuilt; called before each registration.

        When pod-resources cannot be read (the kubelet may serve it a moment after its
        device plugin socket), every ID the preparer has on record is held back instead;
        the rebuild pass sorts them out once pod-resources answers. When neither answers,
        this raises and the registration waits: reporting those IDs healthy could hand a
        container a device whose spec is gone."""
        try:
            used = await self.in_use()
        except grpc.aio.AioRpcError as err:
            logger.warning(
                "pod-resources unavailable; holding back every recorded allocation",
                extra={"error": err.details()},
            )
            used = {spec.name: set(await self._recorded(spec.name)) for spec in self.specs}
        self.pending = {
            spec.name: frozenset(used[spec.name]) for spec in self.specs if used.get(spec.name)
        }
        await self.feed.touch()
        self.wake.set()

    async def _recorded(self, resource: str) -> tuple[str, ...]:
        listed = await self.bus.request(
            subjects.dp_list(self.node), ListAllocations(resource=resource), Allocations, 5.0
        )
        return listed.ids

    async def settle(self) -> None:
        """Ask the preparer to rebuild every held-back ID a pod still holds, then let the
        confirmed ones (and those no pod holds any more) be reported as they are."""
        if not any(self.pending.values()):
            return
        await self.feed.ready.wait()
        used = await self.in_use()
        self.short_of_inventory = False
        for spec in self.specs:
            waiting = self.restoring(spec.name)
            if not waiting:
                continue
            # IDs no pod holds any more are not rebuilt: the reconciler releases them.
            gone = waiting - used.get(spec.name, set())
            done = await self._restore(spec, waiting - gone)
            self.pending[spec.name] = self.restoring(spec.name) - gone - done
        await self.feed.touch()

    async def _restore(self, spec: ResourceSpec, ids: frozenset[str]) -> frozenset[str]:
        """The IDs now in place; the others stay held back for the next pass."""
        by_id = {o.id: o for o in dp_model.offered(spec, self.feed.devices, self.feed.holds)}
        unknown = sorted(ids - by_id.keys())
        if unknown:
            self.short_of_inventory = True
            logger.warning(
                "held device-plugin IDs are not in the inventory (yet); not restored",
                extra={"resource": spec.name, "ids": unknown},
            )
        allocations = tuple(
            DpAllocation(id=i, device=by_id[i].device) for i in sorted(ids) if i in by_id
        )
        if not allocations:
            return frozenset()
        reply = await self.bus.request(
            subjects.dp_restore(self.node),
            RestoreAllocations(
                resource=spec.name,
                allocations=allocations,
                timeout_ms=int(RESTORE_TIMEOUT * 1000),
            ),
            AllocationsRestored,
            RESTORE_TIMEOUT,
        )
        for device_id, error in sorted(reply.errors.items()):
            logger.warning(
                "device-plugin allocation not restored; stays unhealthy",
                extra={"resource": spec.name, "id": device_id, "error": error},
            )
        if reply.restored:
            logger.info(
                "device-plugin allocations restored",
                extra={"resource": spec.name, "ids": list(reply.restored)},
            )
        return frozenset(a.id for a in allocations if a.id not in reply.errors)

    async def on_service_ready(self, msg: ServiceReady) -> None:
        """A preparer that (re)started can take the rebuilds a missing one could not."""
        if msg.service == PREPARER and any(self.pending.values()):
            self.wake.set()

    async def run(self, stopping: asyncio.Event, period: float) -> None:
        """Rebuild held-back IDs when woken (registration, a preparer start) and every
        `period` seconds while some wait; failures wait for the next pass."""
        while not stopping.is_set():
            self.wake.clear()
            try:
                await self.settle()
            except (grpc.aio.AioRpcError, BusError) as err:
                logger.warning("device-plugin restore pass failed", extra={"error": str(err)})
            version = self.feed.version  # after the pass: its own touch must not wake it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken(stopping, version), period)

    async def _woken(self, stopping: asyncio.Event, version: int) -> None:
        waits: list[asyncio.Future[object]] = [
            asyncio.ensure_future(e.wait()) for e in (self.wake, stopping)
        ]
        if self.short_of_inventory:
            waits.append(asyncio.ensure_future(self.feed.wait_newer(version)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
