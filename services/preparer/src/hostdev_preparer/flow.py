"""The steps every prepare shares, claims and device-plugin allocations alike: reserve, apply, write, undo."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import msgspec
from opentelemetry import trace

from hostdev_bus import Bus, KeyExists, KvStore
from hostdev_cdi import Spec
from hostdev_events import subjects
from hostdev_events.alloc import (
    DeviceWant,
    Released,
    ReleaseDevices,
    Reserved,
    ReserveDevices,
    ledger_entries,
)
from hostdev_events.base import ErrorCode
from hostdev_events.cdi import (
    CdiSpecsRemoved,
    CdiSpecsWritten,
    RemoveCdiSpecs,
    RequestMetadata,
    WriteCdiSpecs,
)
from hostdev_events.claims import ClaimRef
from hostdev_events.inventory import Device
from hostdev_events.plans import AnyPlan
from hostdev_events.state import Checkpoint
from hostdev_families import Family
from hostdev_kube import ResourceClaim
from hostdev_preparer import cdispec, machine, reply
from hostdev_preparer.errors import ClaimRejected
from hostdev_preparer.inventory import InventoryView
from hostdev_preparer.locks import KeyedLocks
from hostdev_preparer.status import StatusWriter
from hostdev_runtime import telemetry
from hostdev_runtime.clock import Clock
from hostdev_runtime.metrics import ClaimMetrics

logger = logging.getLogger(__name__)
T = TypeVar("T")
tracer = trace.get_tracer("hostdev_preparer")

# Upper bound for one hop when the kubelet's deadline is far away (it allows 45 s).
MAX_HOP_SECONDS = 10.0


class ClaimReader(StatusWriter, Protocol):
    """Reads ResourceClaims from the API server, and writes their device status."""

    async def get_claim(self, namespace: str, name: str) -> ResourceClaim:
        """The claim; raises hostdev_kube.NotFound or KubeError."""
        ...


class KnownClaims(Protocol):
    """Claims as a watch last showed them (claimwatch.ClaimCache), to spare a GET."""

    def fresh(self, namespace: str, name: str, uid: str) -> ResourceClaim | None:
        """The claim when memory can stand in for the API server; None means GET it."""
        ...

    def prepared(self, uid: str) -> None:
        """The claim has its record; memory need not keep it for a prepare any more."""
        ...

    def unprepared(self, uid: str) -> None:
        """Forget the claim for prepares to come: the next one reads the API."""
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
    metrics: ClaimMetrics
    metadata_families: frozenset[str] | None = None  # None: every family
    boot_id: str = ""
    known_claims: KnownClaims | None = None  # None: every prepare GETs its claim
    # Claims this process has seen fully prepared (record, spec and hold all in place). A
    # claim with no host action writes its record while its spec and hold are still being
    # written (complete_at_once), so only these records are answered as they stand; a claim
    # leaves the set when an unprepare starts. Bounded by the claims prepared here.
    settled: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Call:
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
            raise ClaimRejected("the kubelet's deadline passed", ErrorCode.TIMEOUT)
        return min(left, MAX_HOP_SECONDS)

    def family(self, name: str) -> Family:
        family = self.deps.families.get(name)
        if family is None:
            raise ClaimRejected(f"device family {name!r} is not enabled on this node")
        return family


async def run_family(blocking: bool, work: Callable[..., T], *args: Any) -> T:
    """Call family code in a thread when it does file I/O, inline when it does not."""
    if blocking:
        return await asyncio.to_thread(work, *args)
    return work(*args)


def family_label(families: set[str]) -> str:
    """One family, `mixed` for several, `none` for a claim without devices of ours."""
    if not families:
        return "none"
    return families.pop() if len(families) == 1 else "mixed"


async def inventory_device(call: Call, name: str) -> Device:
    device = await call.deps.inventory.device(name)
    if device is None:
        raise ClaimRejected(
            f"device {name} is not in the inventory of {call.deps.node}", ErrorCode.NOT_FOUND
        )
    if not device.healthy:
        raise ClaimRejected(f"device {name} is unhealthy")
    return device


async def complete(
    call: Call, checkpoint: Checkpoint, revision: int, *, metadata: bool = True
) -> Checkpoint:
    """Reserve, apply, write specs, record the outcome; on failure undo everything.

    When every plan already knows its final edits (host paths, USB, PCI functions), the
    specs are written while the devices are reserved and set up: a spec the runtime is
    never told about does no harm, and a failure removes it again. An mdev's group is
    known only once it exists, so then the write waits for the host actions.

    Returns the completed checkpoint: its outcome for the kubelet, its applied plans
    (with their final edits) for the device-plugin path.
    """
    uid = call.claim.uid
    with_metadata = metadata
    try:
        if all(p.final_edits for p in checkpoint.plans):
            written, applied = await _write_while_reserving(call, checkpoint, with_metadata)
        else:
            applied = await _reserve_and_apply(call, checkpoint)
            written = await _write_specs(call, checkpoint, applied, with_metadata)
        spec, items = written
        result = reply.outcome(
            call.deps.driver, uid, checkpoint.devices, spec, frozenset(i.request for i in items)
        )
        done = msgspec.structs.replace(
            checkpoint,
            step=machine.step_kept(checkpoint.step, machine.Event.COMPLETED),
            plans=tuple(applied),
            outcome=result,
            boot_id=call.deps.boot_id,
        )
    except BaseException:
        await rollback(call, checkpoint, revision)
        raise
    # Everything is in place; only the record is left. If someone else changed it since
    # (an unprepare that came in, another instance), undoing here would undo their view
    # too: report the failure and let the next call decide from the record.
    await call.deps.checkpoints.update(call.key, done, last=revision)
    logger.info("claim prepared", extra={telemetry.ATTR_CLAIM_UID: uid})
    return done


def trusted(call: Call, checkpoint: Checkpoint) -> bool:
    """Whether a completed record can be answered as it stands: written after its work (a
    host action), or seen through by this process (see Deps.settled). A family no longer
    enabled counts as a host action: the record is answered as before."""
    if call.claim.uid in call.deps.settled:
        return True
    try:
        return acts_on_host(call, checkpoint.plans)
    except ClaimRejected:
        return True


def acts_on_host(call: Call, plans: Iterable[AnyPlan]) -> bool:
    """Whether any plan changes the host (binds a driver, creates an mdev, sets a VF),
    learns its edits only once applied, or has network devices for the claim's status;
    host paths and USB nodes are only handed over."""
    return any(
        not p.final_edits or p.edits.net_devices or call.family(p.family).blocking
        for p in plans
        if not p.observe_only
    )


async def complete_at_once(call: Call, planned: Checkpoint) -> Checkpoint:
    """A claim with no host action: reserve, write the specs and write the completed record
    all at once, the record being the only checkpoint write of its prepare.

    Nothing here touches the host, so there is nothing to restore, only a hold and a spec
    to find in place. The record may therefore land before them: it is trusted as written
    only by the process that saw all three succeed (`Deps.settled`); any other prepare that
    finds it (after a crash, a restart, a failed undo) redoes the reserve and the spec
    write from the record first (machine: Resume), both idempotent for the same owner.
    A crash before the record leaves a spec or a hold with no record: the kubelet's
    unprepare (no record: remove and release by owner), the orphan scan (a hold without a
    checkpoint) and the CDI writer's start-up sweep (a spec without one) remove them.
    """
    uid = call.claim.uid
    # Pure for these plans (acts_on_host said so): no I/O, so done before anything is sent.
    applied = [p if p.observe_only else call.family(p.family).apply(p) for p in planned.plans]
    spec, items = _specs_for(call, planned, applied, True)
    done = msgspec.structs.replace(
        planned,
        step=machine.step_kept(None, machine.Event.COMPLETED_AT_ONCE),
        plans=tuple(applied),
        outcome=reply.outcome(
            call.deps.driver, uid, planned.devices, spec, frozenset(i.request for i in items)
        ),
        boot_id=call.deps.boot_id,
    )
    try:
        reserving, writing, recording = await asyncio.gather(
            _reserve(call, planned),
            _send_specs(call, spec, items),
            call.deps.checkpoints.create(call.key, done),
            return_exceptions=True,
        )
    except BaseException:  # cancelled (the service stops): leave what a crash would leave
        await _sweep_quietly(call, planned)
        raise
    if isinstance(recording, KeyExists):
        # Another instance recorded the claim meanwhile: the hold and the spec are the same
        # owner's, theirs now. The caller answers from their record.
        raise recording
    failed = next((r for r in (reserving, writing) if isinstance(r, BaseException)), None)
    if failed is None:
        if isinstance(recording, BaseException):
            # The write may have landed (an answer lost): then the record must find its spec
            # and hold in place. Not settled here, so the next prepare redoes them anyway.
            raise recording
        logger.info("claim prepared", extra={telemetry.ATTR_CLAIM_UID: uid})
        return done
    revision = None if isinstance(recording, BaseException) else recording
    await _drop_at_once(call, planned, revision)
    raise failed


async def _drop_at_once(call: Call, planned: Checkpoint, revision: int | None) -> None:
    """Undo a failed prepare with no host action: its record (when it landed) and its spec
    and hold go together. Whatever is left is redone or swept later (complete_at_once)."""
    steps = [_sweep_quietly(call, planned)]
    if revision is not None:
        steps.append(_delete_quietly(call, revision))
    await asyncio.gather(*steps)


async def _sweep_quietly(call: Call, checkpoint: Checkpoint) -> None:
    try:
        await sweep(call, checkpoint)
    except Exception:
        logger.exception("rollback failed", extra={telemetry.ATTR_CLAIM_UID: call.claim.uid})


async def _delete_quietly(call: Call, revision: int) -> None:
    try:
        await call.deps.checkpoints.delete(call.key, last=revision)
    except Exception:
        logger.exception(
            "could not remove the record of a failed prepare; the next prepare redoes it",
            extra={telemetry.ATTR_CLAIM_UID: call.claim.uid},
        )


async def forget(call: Call, checkpoint: Checkpoint, revision: int) -> None:
    """Unprepare a completed claim with no host action: its record, spec and hold go at
    once. A failure or crash part-way leaves either a record without its spec and hold,
    which no process trusts any more (the caller took the claim out of `Deps.settled`; a
    new process starts with none), so a prepare redoes it and an unprepare forgets it
    again; or a spec and hold without a record, which the kubelet's retry sweeps."""
    machine.step_after(checkpoint.step, machine.Event.FORGOTTEN)  # the record goes
    results = await asyncio.gather(
        call.deps.checkpoints.delete(call.key, last=revision),
        sweep(call, checkpoint),
        return_exceptions=True,
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def sweep(call: Call, checkpoint: Checkpoint | None) -> None:
    """Remove the claim's specs and release its holds (every hold of the owner when no
    record says which), for a claim no checkpoint records and no host action touched."""
    await asyncio.gather(_remove_specs(call), _release(call, checkpoint))


async def _write_while_reserving(
    call: Call, checkpoint: Checkpoint, with_metadata: bool
) -> tuple[tuple[Spec | None, tuple[RequestMetadata, ...]], list[AnyPlan]]:
    """The specs written and the devices reserved at once, for plans whose edits are final.

    Both must have finished before the caller rolls back: a write still under way would put
    back the spec the rollback removed. The reserve's failure is raised first.
    """
    writing, reserving = await asyncio.gather(
        _write_specs(call, checkpoint, list(checkpoint.plans), with_metadata),
        _reserve_and_apply(call, checkpoint),
        return_exceptions=True,
    )
    if isinstance(reserving, BaseException):
        raise reserving
    if isinstance(writing, BaseException):
        raise writing
    return writing, reserving


async def _reserve(call: Call, checkpoint: Checkpoint) -> None:
    with tracer.start_as_current_span("reserve devices"):
        await call.deps.bus.request(
            subjects.alloc_reserve(call.deps.node),
            ReserveDevices(owner=call.claim.uid, devices=wants(checkpoint)),
            Reserved,
            call.hop(),
        )


async def _reserve_and_apply(call: Call, checkpoint: Checkpoint) -> list[AnyPlan]:
    await _reserve(call, checkpoint)
    applied = []
    for plan in checkpoint.plans:
        if plan.observe_only:
            applied.append(plan)
            continue
        with tracer.start_as_current_span(
            "host actions", attributes={telemetry.ATTR_DEVICE: plan.device}
        ):
            family = call.family(plan.family)
            applied.append(await run_family(family.blocking, family.apply, plan))
    return applied


async def _write_specs(
    call: Call, checkpoint: Checkpoint, plans: list[AnyPlan], with_metadata: bool
) -> tuple[Spec | None, tuple[RequestMetadata, ...]]:
    spec, items = _specs_for(call, checkpoint, plans, with_metadata)
    await _send_specs(call, spec, items)
    return spec, items


def _specs_for(
    call: Call, checkpoint: Checkpoint, plans: list[AnyPlan], with_metadata: bool
) -> tuple[Spec | None, tuple[RequestMetadata, ...]]:
    deps = call.deps
    spec = cdispec.claim_spec(deps.driver, call.claim.uid, plans)
    items = (
        cdispec.metadata_items(deps.driver, checkpoint, plans, deps.metadata_families)
        if with_metadata
        else ()
    )
    return spec, items


async def _send_specs(call: Call, spec: Spec | None, items: tuple[RequestMetadata, ...]) -> None:
    with tracer.start_as_current_span("write CDI spec"):
        specs = tuple(msgspec.Raw(s) for s in cdispec.encoded_specs(spec))
        if specs or items:
            await call.deps.bus.request(
                subjects.cdi_write(call.deps.node),
                WriteCdiSpecs(owner=call.claim.uid, specs=specs, metadata=items),
                CdiSpecsWritten,
                call.hop(),
            )


def current(deps: Deps, checkpoint: Checkpoint) -> bool:
    """A completed checkpoint whose work is still in place: same boot of the node."""
    return machine.completed_in_boot(checkpoint, deps.boot_id)


def wants(checkpoint: Checkpoint) -> tuple[DeviceWant, ...]:
    """The ledger entries to hold: every device but those asked for with adminAccess."""
    wants = {
        (d.device, d.share_id): DeviceWant(
            device=d.device,
            shareable=d.shareable,
            consumes=d.consumes,
            also_holds=d.also_holds,
            capacity=d.capacity,
            consumed=d.consumed,
            share_id=d.share_id,
        )
        for d in checkpoint.devices
        if not d.admin_access
    }
    return tuple(wants.values())


async def rollback(call: Call, checkpoint: Checkpoint, revision: int) -> None:
    """Undo a failed prepare; if even that fails the checkpoint stays for the next call."""
    try:
        await undo(call, checkpoint, revision)
    except Exception:
        logger.exception("rollback failed", extra={telemetry.ATTR_CLAIM_UID: call.claim.uid})


async def undo(call: Call, checkpoint: Checkpoint, revision: int) -> None:
    """Remove specs, undo host actions in reverse, release devices, drop the checkpoint."""
    deps = call.deps
    undoing = machine.step_kept(checkpoint.step, machine.Event.UNDOING)
    if checkpoint.step != undoing:
        checkpoint = msgspec.structs.replace(checkpoint, step=undoing)
        revision = await deps.checkpoints.update(call.key, checkpoint, last=revision)
    acted = [p for p in checkpoint.plans if not p.observe_only]
    families = [call.family(p.family) for p in acted]
    if any(f.blocking for f in families):
        # Host actions first undone, then the devices released: nobody may get a device
        # still bound to vfio-pci for someone else.
        await _remove_specs(call)
        for plan, family in reversed(list(zip(acted, families, strict=True))):
            with tracer.start_as_current_span(
                "undo host actions", attributes={telemetry.ATTR_DEVICE: plan.device}
            ):
                await run_family(family.blocking, family.unprepare, plan)
        await _release(call, checkpoint)
    else:
        # Nothing was done on the host: the spec and the hold can go at the same time.
        await asyncio.gather(_remove_specs(call), _release(call, checkpoint))
    machine.step_after(checkpoint.step, machine.Event.UNDONE)  # the record goes
    await deps.checkpoints.delete(call.key, last=revision)


async def _remove_specs(call: Call) -> None:
    with tracer.start_as_current_span("remove CDI spec"):
        await call.deps.bus.request(
            subjects.cdi_remove(call.deps.node),
            RemoveCdiSpecs(owner=call.claim.uid),
            CdiSpecsRemoved,
            call.hop(),
        )


async def _release(call: Call, checkpoint: Checkpoint | None) -> None:
    """Release every ledger entry the claim holds: devices, their groups, counter sets
    (with no record to say which, every entry the owner holds)."""
    entries = None if checkpoint is None else ledger_entries(wants(checkpoint))
    with tracer.start_as_current_span("release devices"):
        await call.deps.bus.request(
            subjects.alloc_release(call.deps.node),
            ReleaseDevices(owner=call.claim.uid, devices=entries),
            Released,
            call.hop(),
        )
