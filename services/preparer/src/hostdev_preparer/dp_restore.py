"""Rebuild device-plugin allocations that pods still hold, after a reboot or a lost record.

The kubelet calls Allocate once per container and keeps the answer; it never calls it
again for a running pod, not after our restart and not after a node reboot, which empties
the CDI directory (tmpfs) and resets vfio bindings, mdevs and VF settings. The gateway asks
here for every ID the kubelet's pod-resources API still lists; an ID whose work is still in
place (same boot) is left alone, so a restart without a reboot changes nothing on the host.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry, Counter

from hostdev_events.dp import AllocationsRestored, DpAllocation, RestoreAllocations
from hostdev_preparer.dp import allocate_held, dp_call, in_place
from hostdev_preparer.errors import failed
from hostdev_preparer.flow import Call, Deps
from hostdev_runtime import telemetry

logger = logging.getLogger(__name__)


class RestoreMetrics:
    """How many device-plugin allocations were rebuilt for pods that still hold them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.restored = Counter(
            "hostdev_dp_allocations_restored",
            "Device-plugin allocations whose CDI spec and host state were rebuilt for a pod "
            "that still holds them (after a reboot), by resource.",
            ["resource"],
            registry=registry,
        )


async def on_restore(
    msg: RestoreAllocations, deps: Deps, metrics: RestoreMetrics
) -> AllocationsRestored:
    """Rebuild each listed ID whose work is gone; errors are per ID, the others go on."""
    deadline = deps.clock.monotonic() + msg.timeout_ms / 1000
    calls = [(a, dp_call(msg.resource, a.id, deps, deadline)) for a in msg.allocations]
    outcomes = await asyncio.gather(*(_restore(msg.resource, a, c, metrics) for a, c in calls))
    restored = tuple(a.id for (a, _), (redone, _) in zip(calls, outcomes, strict=True) if redone)
    errors = {a.id: error for (a, _), (_, error) in zip(calls, outcomes, strict=True) if error}
    return AllocationsRestored(restored=restored, errors=errors)


async def _restore(
    resource: str, allocation: DpAllocation, call: Call, metrics: RestoreMetrics
) -> tuple[bool, str]:
    """(rebuilt, error text) for one ID."""
    async with call.deps.locks.hold(call.claim.uid):
        try:
            found = await call.deps.checkpoints.get(call.key)
            if found is not None and in_place(call.deps, allocation, found[0]):
                return False, ""
            await allocate_held(allocation, call)
        except Exception as err:
            detail = failed("restore", call.claim.uid, err)[1]
            logger.warning(
                "device-plugin allocation not restored",
                extra={
                    "resource": resource,
                    "id": allocation.id,
                    telemetry.ATTR_DEVICE: allocation.device,
                    "error": detail,
                },
            )
            return False, detail
    metrics.restored.labels(resource=resource).inc()
    logger.info(
        "device-plugin allocation restored",
        extra={
            "resource": resource,
            "id": allocation.id,
            telemetry.ATTR_DEVICE: allocation.device,
            telemetry.ATTR_CLAIM_UID: call.claim.uid,
            "reason": "no record" if found is None else "earlier boot",
        },
    )
    return True, ""
