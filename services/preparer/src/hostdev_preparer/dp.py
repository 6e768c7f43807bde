"""Device-plugin allocations: the same reserve/apply/write steps as claims, without an API object."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from opentelemetry import trace

from hostdev_events import dp, subjects
from hostdev_events.base import ErrorCode
from hostdev_events.claims import ClaimRef
from hostdev_events.dp import (
    AllocateDevices,
    Allocations,
    AllocationsReleased,
    DevicesAllocated,
    DpAllocation,
    DpPrepared,
    ListAllocations,
    ReleaseAllocations,
)
from hostdev_events.state import AllocatedDevice, Checkpoint, ClaimStep
from hostdev_preparer import machine
from hostdev_preparer.errors import failed
from hostdev_preparer.flow import (
    Call,
    Deps,
    complete,
    current,
    inventory_device,
    run_family,
    undo,
)
from hostdev_runtime import telemetry
from hostdev_runtime.errors import HandlerError

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("hostdev_preparer")

# Device-plugin owners have no namespace; this marks their checkpoints.
DP_NAMESPACE = ""


def dp_call(resource: str, device_id: str, deps: Deps, deadline: float) -> Call:
    """One ID of a resource as a call, owned by `dp_<resource>_<id>`."""
    ref = ClaimRef(namespace=DP_NAMESPACE, name=resource, uid=dp.owner(resource, device_id))
    return Call(ref, deps, deadline)


async def on_allocate(msg: AllocateDevices, deps: Deps) -> DevicesAllocated:
    """Prepare every ID of one container's Allocate; if one fails, none stays prepared."""
    deadline = deps.clock.monotonic() + msg.timeout_ms / 1000
    calls = [(a, dp_call(msg.resource, a.id, deps, deadline)) for a in msg.allocations]
    async with contextlib.AsyncExitStack() as held:
        # The IDs stay locked until a failed call has rolled back: a retry of the same
        # Allocate (the kubelet's, after this one timed out) waiting for a lock would
        # otherwise prepare the IDs first and then see its work undone by this rollback.
        for key in sorted({c.claim.uid for _, c in calls}):
            await held.enter_async_context(deps.locks.hold(key))
        results = await asyncio.gather(*(_allocate(a, c) for a, c in calls), return_exceptions=True)
        errors = [
            (a, c, r)
            for (a, c), r in zip(calls, results, strict=True)
            if isinstance(r, BaseException)
        ]
        if errors:
            await asyncio.gather(*(_release_held(c) for _, c in calls))
            detail = "; ".join(
                f"{a.id}: {failed('allocate', c.claim.uid, e)[1] if isinstance(e, Exception) else e}"
                for a, c, e in errors
            )
            raise HandlerError(ErrorCode.CONFLICT, f"{msg.resource}: {detail}")
    prepared = tuple(r for r in results if isinstance(r, DpPrepared))
    return DevicesAllocated(resource=msg.resource, prepared=prepared)


async def _allocate(allocation: DpAllocation, call: Call) -> DpPrepared:
    with tracer.start_as_current_span(
        "allocate device", attributes={telemetry.ATTR_DEVICE: allocation.device}
    ):
        return await allocate_held(allocation, call)


def in_place(deps: Deps, allocation: DpAllocation, checkpoint: Checkpoint) -> bool:
    """Whether the ID's work is done for this device and still there (same boot)."""
    same = [d.device for d in checkpoint.devices] == [allocation.device]
    return same and current(deps, checkpoint)


async def allocate_held(allocation: DpAllocation, call: Call) -> DpPrepared:
    """Prepare one ID, or redo what a reboot undid; the caller holds the ID's lock."""
    found = await call.deps.checkpoints.get(call.key)
    if found is not None:
        checkpoint, revision = found
        if in_place(call.deps, allocation, checkpoint):
            return _prepared(allocation, checkpoint)  # the kubelet reused the ID
        same = [d.device for d in checkpoint.devices] == [allocation.device]
        if same and checkpoint.step == ClaimStep.COMPLETED:  # from an earlier boot
            return _prepared(allocation, await complete(call, checkpoint, revision, metadata=False))
        await undo(call, checkpoint, revision)
    device = await inventory_device(call, allocation.device)
    family = call.family(device.family)
    plan = await run_family(family.blocking, family.plan, device, call.claim.uid, {})
    checkpoint = Checkpoint(
        claim=call.claim,
        step=machine.step_kept(None, machine.Event.PLANNED),
        devices=(
            AllocatedDevice(
                request=allocation.id,
                pool=call.deps.node,
                device=device.name,
                family=device.family,
                shareable=device.shareable,
                consumes=device.consumes,
                also_holds=device.also_holds,
                # A device-plugin ID is one user of the device, at each capacity's default.
                capacity={name: c.value for name, c in device.consumable.items()},
                consumed={name: c.default for name, c in device.consumable.items()},
            ),
        ),
        plans=(plan,),
    )
    revision = await call.deps.checkpoints.create(call.key, checkpoint)
    done = await complete(call, checkpoint, revision, metadata=False)
    return _prepared(allocation, done)


def _prepared(allocation: DpAllocation, checkpoint: Checkpoint) -> DpPrepared:
    (applied,) = checkpoint.plans
    ids = checkpoint.outcome.devices[0].cdi_device_ids if checkpoint.outcome else ()
    return DpPrepared(
        id=allocation.id,
        device=allocation.device,
        family=applied.family,
        cdi_device_ids=ids,
        edits=applied.edits,
        attributes=applied.attributes,
    )


async def _release(call: Call) -> str:
    async with call.deps.locks.hold(call.claim.uid):
        return await _release_held(call)


async def _release_held(call: Call) -> str:
    """Undo one ID; the caller holds its lock."""
    try:
        found = await call.deps.checkpoints.get(call.key)
        if found is not None:
            await undo(call, *found)
        return ""
    except Exception as err:
        return failed("release", call.claim.uid, err)[1]


async def on_release(msg: ReleaseAllocations, deps: Deps) -> AllocationsReleased:
    """Undo allocations no pod uses any more; unknown IDs are already released."""
    deadline = deps.clock.monotonic() + msg.timeout_ms / 1000
    errors = await asyncio.gather(
        *(_release(dp_call(msg.resource, i, deps, deadline)) for i in msg.ids)
    )
    return AllocationsReleased(errors=dict(zip(msg.ids, errors, strict=True)))


async def on_list(msg: ListAllocations, deps: Deps) -> Allocations:
    """The IDs of `resource` that hold a prepared device on this node."""
    prefix = subjects.device_key_prefix(deps.node) + dp.owner_prefix(msg.resource)
    keys = await deps.checkpoints.keys(subjects.device_key_prefix(deps.node))
    return Allocations(
        resource=msg.resource, ids=tuple(k[len(prefix) :] for k in keys if k.startswith(prefix))
    )
