"""Prepare and unprepare: the claim state machine driven over the bus, one claim at a time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import msgspec
from opentelemetry import trace

from hostdev_bus import Bus, BusError, KeyExists, KvStore, RemoteError
from hostdev_cdi import CdiError
from hostdev_events import subjects
from hostdev_events.alloc import DeviceWant, Released, ReleaseDevices, Reserved, ReserveDevices
from hostdev_events.cdi import CdiSpecsRemoved, CdiSpecsWritten, RemoveCdiSpecs, WriteCdiSpecs
from hostdev_events.claims import (
    ClaimOutcome,
    ClaimRef,
    PrepareClaims,
    PrepareClaimsReply,
    UnprepareClaims,
    UnprepareClaimsReply,
)
from hostdev_events.inventory import Device
from hostdev_events.state import AllocatedDevice, Checkpoint, ClaimStep, HostUndo
from hostdev_families import Family, FamilyError
from hostdev_kube import KubeError, NotFound, ResourceClaim
from hostdev_preparer import machine
from hostdev_preparer.inventory import InventoryView
from hostdev_preparer.locks import KeyedLocks
from hostdev_runtime import telemetry
from hostdev_runtime.clock import Clock

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("hostdev_preparer")

# Upper bound for one hop when the kubelet's deadline is far away (it allows 45 s).
MAX_HOP_SECONDS = 10.0


class ClaimReader(Protocol):
    """Reads ResourceClaims from the API server."""

    async def get_claim(self, namespace: str, name: str) -> ResourceClaim:
        """The claim; raises hostdev_kube.NotFound or KubeError."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Deps:
    """What the handlers use; built in app.run, never here."""

    node: str
    driver: str
    bus: Bus
    checkpoints: KvStore[Checkpoint]
    inventory: InventoryView
    claims: ClaimReader
    families: Mapping[str, Family]
    clock: Clock
    locks: KeyedLocks


@dataclass(frozen=True, slots=True)
class _Call:
    """One claim within one kubelet call, with the call's deadline."""

    claim: ClaimRef
    deps: Deps
    deadline: float

    @property
    def key(self) -> str:
        return subjects.checkpoint_key(self.deps.node, self.claim.uid)

    def hop(self) -> float:
        left = self.deadline - self.deps.clock.monotonic()
        if left <= 0:
            raise machine.ClaimRejected("the kubelet's deadline passed")
        return min(left, MAX_HOP_SECONDS)

    def family(self, name: str) -> Family:
        family = self.deps.families.get(name)
        if family is None:
            raise machine.ClaimRejected(f"device family {name!r} is not enabled on this node")
        return family


async def on_prepare(msg: PrepareClaims, deps: Deps) -> PrepareClaimsReply:
    """Prepare every claim of the call concurrently; each gets its own outcome."""
    deadline = deps.clock.monotonic() + msg.timeout_ms / 1000
    claims = list({c.uid: c for c in msg.claims}.values())
    outcomes = await asyncio.gather(*(_prepare_one(_Call(c, deps, deadline)) for c in claims))
    return PrepareClaimsReply(outcomes={c.uid: o for c, o in zip(claims, outcomes, strict=True)})


async def on_unprepare(msg: UnprepareClaims, deps: Deps) -> UnprepareClaimsReply:
    """Unprepare every claim of the call; an unknown claim succeeds."""
    deadline = deps.clock.monotonic() + msg.timeout_ms / 1000
    claims = list({c.uid: c for c in msg.claims}.values())
    errors = await asyncio.gather(*(_unprepare_one(_Call(c, deps, deadline)) for c in claims))
    return UnprepareClaimsReply(errors={c.uid: e for c, e in zip(claims, errors, strict=True)})


def _failure(call: _Call, err: Exception) -> str:
    if isinstance(err, RemoteError):
        return err.detail
    if isinstance(err, machine.ClaimRejected | FamilyError | CdiError | KubeError | BusError):
        return str(err)
    logger.exception("claim failed", extra={telemetry.ATTR_CLAIM_UID: call.claim.uid})
    return f"internal error: {type(err).__name__}: {err}"


async def _prepare_one(call: _Call) -> ClaimOutcome:
    attributes = {
        telemetry.ATTR_CLAIM_UID: call.claim.uid,
        telemetry.ATTR_CLAIM_NAME: call.claim.name,
        telemetry.ATTR_CLAIM_NAMESPACE: call.claim.namespace,
    }
    with tracer.start_as_current_span("prepare claim", attributes=attributes) as span:
        async with call.deps.locks.hold(call.claim.uid):
            try:
                result = await _prepare(call)
            except Exception as err:
                result = ClaimOutcome(error=_failure(call, err))
        if result.error:
            span.set_status(trace.StatusCode.ERROR, result.error)
        span.set_attribute(telemetry.ATTR_DEVICES, [d.device for d in result.devices])
        return result


async def _prepare(call: _Call) -> ClaimOutcome:
    found = await call.deps.checkpoints.get(call.key)
    if found is not None:
        checkpoint, revision = found
        if checkpoint.step == ClaimStep.COMPLETED and checkpoint.outcome is not None:
            return checkpoint.outcome  # idempotent: the same answer as the first time
        if checkpoint.step == ClaimStep.UNPREPARING:
            await _undo(call, checkpoint, revision)
        else:
            return await _complete(call, checkpoint, revision)
    checkpoint = await _plan(call)
    try:
        revision = await call.deps.checkpoints.create(call.key, checkpoint)
    except KeyExists:
        # Another instance recorded it between our read and write: finish its record.
        again = await call.deps.checkpoints.get(call.key)
        if again is None:
            raise machine.ClaimRejected("checkpoint vanished while preparing; retry") from None
        return await _prepare_recorded(call, *again)
    return await _complete(call, checkpoint, revision)


async def _prepare_recorded(call: _Call, checkpoint: Checkpoint, revision: int) -> ClaimOutcome:
    if checkpoint.step == ClaimStep.COMPLETED and checkpoint.outcome is not None:
        return checkpoint.outcome
    return await _complete(call, checkpoint, revision)


async def _plan(call: _Call) -> Checkpoint:
    """Read the claim, pick our devices, plan host actions; nothing is written yet."""
    with tracer.start_as_current_span("read claim"):
        try:
            claim = await call.deps.claims.get_claim(call.claim.namespace, call.claim.name)
        except NotFound:
            raise machine.ClaimRejected(
                f"claim {call.claim.namespace}/{call.claim.name} not found in the API"
            ) from None
    allocated = machine.our_devices(claim, call.claim.uid, call.deps.driver, call.deps.node)
    configs = machine.request_configs(claim, call.deps.driver)
    devices: list[AllocatedDevice] = []
    plans: dict[str, HostUndo] = {}
    for item in allocated:
        device = await _inventory_device(call, item.device)
        devices.append(
            msgspec.structs.replace(
                item,
                family=device.family,
                shareable=device.shareable,
                consumes=device.consumes,
                also_holds=device.also_holds,
            )
        )
        if device.name not in plans:
            family = call.family(device.family)
            config = configs.get(item.request, {})
            plans[device.name] = await asyncio.to_thread(
                family.plan, device, call.claim.uid, config
            )
    return Checkpoint(
        claim=call.claim,
        step=ClaimStep.PREPARING,
        devices=tuple(devices),
        undo=tuple(plans.values()),
    )


async def _inventory_device(call: _Call, name: str) -> Device:
    device = await call.deps.inventory.device(name)
    if device is None:
        raise machine.ClaimRejected(f"device {name} is not in the inventory of {call.deps.node}")
    if not device.healthy:
        raise machine.ClaimRejected(f"device {name} is unhealthy")
    return device


async def _complete(call: _Call, checkpoint: Checkpoint, revision: int) -> ClaimOutcome:
    """Reserve, apply, write specs, record the outcome; on failure undo everything."""
    deps = call.deps
    uid = call.claim.uid
    wants = _wants(checkpoint)
    try:
        with tracer.start_as_current_span("reserve devices"):
            await deps.bus.request(
                subjects.alloc_reserve(deps.node),
                ReserveDevices(owner=uid, devices=wants),
                Reserved,
                call.hop(),
            )
        applied = []
        for plan in checkpoint.undo:
            with tracer.start_as_current_span(
                "host actions", attributes={telemetry.ATTR_DEVICE: plan.device}
            ):
                applied.append(await asyncio.to_thread(call.family(plan.family).apply, plan))
        spec = machine.claim_spec(deps.driver, uid, applied)
        with tracer.start_as_current_span("write CDI spec"):
            specs = tuple(msgspec.Raw(s) for s in machine.encoded_specs(spec))
            if specs:
                await deps.bus.request(
                    subjects.cdi_write(deps.node),
                    WriteCdiSpecs(owner=uid, specs=specs),
                    CdiSpecsWritten,
                    call.hop(),
                )
        result = machine.outcome(deps.driver, uid, checkpoint.devices, spec)
        done = msgspec.structs.replace(
            checkpoint, step=ClaimStep.COMPLETED, undo=tuple(applied), outcome=result
        )
        await deps.checkpoints.update(call.key, done, last=revision)
    except Exception:
        await _rollback(call, checkpoint, revision)
        raise
    logger.info("claim prepared", extra={telemetry.ATTR_CLAIM_UID: uid})
    return result


def _wants(checkpoint: Checkpoint) -> tuple[DeviceWant, ...]:
    wants = {
        d.device: DeviceWant(
            device=d.device, shareable=d.shareable, consumes=d.consumes, also_holds=d.also_holds
        )
        for d in checkpoint.devices
    }
    return tuple(wants.values())


async def _rollback(call: _Call, checkpoint: Checkpoint, revision: int) -> None:
    """Undo a failed prepare; if even that fails the checkpoint stays for the next call."""
    try:
        await _undo(call, checkpoint, revision)
    except Exception:
        logger.exception("rollback failed", extra={telemetry.ATTR_CLAIM_UID: call.claim.uid})


async def _undo(call: _Call, checkpoint: Checkpoint, revision: int) -> None:
    """Remove specs, undo host actions in reverse, release devices, drop the checkpoint."""
    deps = call.deps
    uid = call.claim.uid
    if checkpoint.step != ClaimStep.UNPREPARING:
        checkpoint = msgspec.structs.replace(checkpoint, step=ClaimStep.UNPREPARING)
        revision = await deps.checkpoints.update(call.key, checkpoint, last=revision)
    with tracer.start_as_current_span("remove CDI spec"):
        await deps.bus.request(
            subjects.cdi_remove(deps.node), RemoveCdiSpecs(owner=uid), CdiSpecsRemoved, call.hop()
        )
    for plan in reversed(checkpoint.undo):
        with tracer.start_as_current_span(
            "undo host actions", attributes={telemetry.ATTR_DEVICE: plan.device}
        ):
            await asyncio.to_thread(call.family(plan.family).unprepare, plan)
    with tracer.start_as_current_span("release devices"):
        await deps.bus.request(
            subjects.alloc_release(deps.node),
            ReleaseDevices(
                owner=uid, devices=tuple(sorted({d.device for d in checkpoint.devices}))
            ),
            Released,
            call.hop(),
        )
    await deps.checkpoints.delete(call.key, last=revision)


async def _unprepare_one(call: _Call) -> str:
    with tracer.start_as_current_span(
        "unprepare claim", attributes={telemetry.ATTR_CLAIM_UID: call.claim.uid}
    ) as span:
        async with call.deps.locks.hold(call.claim.uid):
            try:
                found = await call.deps.checkpoints.get(call.key)
                if found is not None:
                    await _undo(call, *found)
                    logger.info(
                        "claim unprepared", extra={telemetry.ATTR_CLAIM_UID: call.claim.uid}
                    )
                return ""
            except Exception as err:
                error = _failure(call, err)
                span.set_status(trace.StatusCode.ERROR, error)
                return error
