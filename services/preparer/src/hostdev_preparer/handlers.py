"""Prepare and unprepare over the bus: read the record, ask the machine, do what it says.

The decisions are machine.py's, the actions flow.py's; this module is the I/O between them,
in the order a prepare runs.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Iterable
from contextlib import AbstractContextManager

import msgspec
from opentelemetry import trace

from hostdev_bus import KeyExists, tracing
from hostdev_events.base import ErrorCode
from hostdev_events.claims import (
    ClaimOutcome,
    PrepareClaims,
    PrepareClaimsReply,
    UnprepareClaims,
    UnprepareClaimsReply,
)
from hostdev_events.inventory import Device
from hostdev_events.plans import AnyPlan, ObservedPlan
from hostdev_events.state import AllocatedDevice, Checkpoint
from hostdev_kube import NotFound, ResourceClaim
from hostdev_preparer import flow, machine, selection, status
from hostdev_preparer.errors import ClaimRejected, failed
from hostdev_preparer.flow import (
    Call,
    Deps,
    acts_on_host,
    complete,
    complete_at_once,
    family_label,
    forget,
    inventory_device,
    run_family,
    sweep,
    undo,
)
from hostdev_runtime import telemetry

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("hostdev_preparer")


async def on_prepare(msg: PrepareClaims, deps: Deps) -> PrepareClaimsReply:
    """Prepare every claim of the call concurrently; each gets its own outcome."""
    deadline = deps.clock.monotonic() + msg.timeout_ms / 1000
    claims = list({c.uid: c for c in msg.claims}.values())
    outcomes = await asyncio.gather(*(_prepare_one(Call(c, deps, deadline)) for c in claims))
    return PrepareClaimsReply(outcomes={c.uid: o for c, o in zip(claims, outcomes, strict=True)})


async def on_unprepare(msg: UnprepareClaims, deps: Deps) -> UnprepareClaimsReply:
    """Unprepare every claim of the call; an unknown claim succeeds."""
    deadline = deps.clock.monotonic() + msg.timeout_ms / 1000
    claims = list({c.uid: c for c in msg.claims}.values())
    errors = await asyncio.gather(*(_unprepare_one(Call(c, deps, deadline)) for c in claims))
    return UnprepareClaimsReply(errors={c.uid: e for c, e in zip(claims, errors, strict=True)})


async def _prepare_one(call: Call) -> ClaimOutcome:
    attributes = {
        telemetry.ATTR_CLAIM_UID: call.claim.uid,
        telemetry.ATTR_CLAIM_NAME: call.claim.name,
        telemetry.ATTR_CLAIM_NAMESPACE: call.claim.namespace,
    }
    metrics = call.deps.metrics
    started = call.deps.clock.monotonic()
    with tracer.start_as_current_span("prepare claim", attributes=attributes) as span:
        async with call.deps.locks.hold(call.claim.uid):
            try:
                result = await _prepare(call)
            except Exception as err:
                code, text = failed("prepare", call.claim.uid, err)
                metrics.errors.labels("prepare", code).inc()
                result = ClaimOutcome(error=text)
        if result.error:
            span.set_status(trace.StatusCode.ERROR, result.error)
        elif call.deps.known_claims is not None:
            call.deps.known_claims.prepared(call.claim.uid)
        span.set_attribute(telemetry.ATTR_DEVICES, [d.device for d in result.devices])
        families = set()
        for device in result.devices:
            found = await call.deps.inventory.device(device.device)
            families.add(found.family if found else "unknown")
        metrics.prepare_seconds.labels(family_label(families)).observe(
            call.deps.clock.monotonic() - started
        )
        return result


async def _prepare(call: Call) -> ClaimOutcome:
    """Prepare one claim: the same answer however often it is called for the same claim.

    Determinism contract: once a call has returned an outcome, every later call for the same
    claim UID in the same boot returns that recorded outcome and touches nothing, whatever
    the API says now (the kubelet may retry while the claim changes under it). A call cut
    short (crash, deadline) leaves a record; the next call resumes it from the record, never
    from a fresh read, so the devices, plans and undo information stay those first chosen.
    After a reboot the recorded plan is carried out again, yielding the same devices and
    CDI IDs. A failed call undoes everything it did and leaves no record, so the next call
    starts afresh.
    """
    # The claim is read while the checkpoint is looked up: most prepares are new claims
    # that need both, and a repeated one simply drops the read.
    reading = asyncio.ensure_future(_read_claim(call))
    try:
        found = await call.deps.checkpoints.get(call.key)
        checkpoint, revision = found if found is not None else (None, 0)
        trust = checkpoint is None or flow.trusted(call, checkpoint)
        match machine.on_prepare(checkpoint, call.deps.boot_id, trusted=trust):
            case machine.Answer(outcome):
                return outcome
            case machine.Resume(recorded):
                return await _outcome(call, recorded, revision)
            case machine.FinishUndo(recorded):
                await undo(call, recorded, revision)
            case machine.Plan():
                pass
        claim = await reading
    finally:
        _settle(reading)
    planned = await _plan(call, claim)
    try:
        if not acts_on_host(call, planned.plans):
            # Nothing on the host to restore: one record, written once everything is done.
            return await _reported(call, await complete_at_once(call, planned))
        revision = await call.deps.checkpoints.create(call.key, planned)
    except KeyExists:
        again = await call.deps.checkpoints.get(call.key)
        return machine.on_conflict(None if again is None else again[0], call.deps.boot_id).outcome
    return await _outcome(call, planned, revision)


async def _outcome(call: Call, checkpoint: Checkpoint, revision: int) -> ClaimOutcome:
    return await _reported(call, await complete(call, checkpoint, revision))


async def _reported(call: Call, done: Checkpoint) -> ClaimOutcome:
    """The outcome for the kubelet, once the claim's device status says what was done."""
    assert done.outcome is not None  # a completed record always has one
    call.deps.settled.add(call.claim.uid)  # its record, spec and hold are all in place
    new = status.entries(
        call.deps.driver,
        call.deps.node,
        done.plans,
        datetime.datetime.fromtimestamp(call.deps.clock.now(), datetime.UTC),
        generation=done.claim_generation,
    )
    if new:
        devices = {d.device for d in done.devices}
        await status.write(call.deps.claims, call.claim, call.deps.driver, devices, new)
    return done.outcome


async def _read_claim(call: Call) -> ResourceClaim:
    known = call.deps.known_claims
    if known is not None:
        claim = known.fresh(call.claim.namespace, call.claim.name, call.claim.uid)
        if claim is not None:
            return claim
    with tracer.start_as_current_span("read claim"):
        # An API server that never answers must not hold the claim past the kubelet's deadline.
        budget = call.hop()
        try:
            async with asyncio.timeout(budget):
                return await call.deps.claims.get_claim(call.claim.namespace, call.claim.name)
        except NotFound:
            raise ClaimRejected(
                f"claim {call.claim.namespace}/{call.claim.name} not found in the API",
                ErrorCode.NOT_FOUND,
            ) from None
        except TimeoutError:
            raise ClaimRejected(
                f"the API server did not answer the read of claim "
                f"{call.claim.namespace}/{call.claim.name} within {budget:.1f}s",
                ErrorCode.TIMEOUT,
            ) from None


def _settle(task: asyncio.Future[ResourceClaim]) -> None:
    """Cancel a read nobody needs; its error, if any, is retrieved so none is reported lost."""
    task.cancel()
    task.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Future[ResourceClaim]) -> None:
    if not task.cancelled():
        task.exception()


async def _plan(call: Call, claim: ResourceClaim) -> Checkpoint:
    """Pick our devices of the claim and plan host actions; nothing is written yet."""
    allocated = selection.our_results(claim, call.claim.uid, call.deps.driver, call.deps.node)
    configs = selection.request_configs(claim, call.deps.driver)
    devices: list[AllocatedDevice] = []
    found_devices: list[Device] = []
    plans: dict[str, AnyPlan] = {}
    for result_request, item in allocated:
        device = await inventory_device(call, item.device)
        found_devices.append(device)
        capacity, consumed = selection.capacity_use(device, item.consumed)
        devices.append(
            msgspec.structs.replace(
                item,
                family=device.family,
                shareable=device.shareable,
                consumes=device.consumes,
                also_holds=device.also_holds,
                capacity=capacity,
                consumed=consumed,
            )
        )
        if item.admin_access and device.name not in plans:
            plans[device.name] = ObservedPlan(
                device=device.name,
                of=device.family,
                edits=device.edits,
                attributes=device.attributes,
            )
        elif not item.admin_access and (
            device.name not in plans or plans[device.name].observe_only
        ):
            family = call.family(device.family)
            config = configs.get(result_request, {})
            plans[device.name] = await run_family(
                family.blocking, family.plan, device, call.claim.uid, config
            )
    selection.check_interface_names(plans.values())
    _link_publishes(d.published_in for d in found_devices)
    return Checkpoint(
        claim=call.claim,
        step=machine.step_kept(None, machine.Event.PLANNED),
        claim_generation=claim.metadata.generation,
        pod_claim_name=claim.metadata.annotations.get(selection.POD_CLAIM_NAME_ANNOTATION, ""),
        devices=tuple(devices),
        plans=tuple(plans.values()),
        trace_context=tracing.traceparent(),
    )


def _link_publishes(published_in: Iterable[str]) -> None:
    """Link the claim's span to the discovery passes that published its devices."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    for value in set(published_in):
        publish = tracing.stored_span(value)
        if publish is not None:
            span.add_link(publish)


async def _unprepare_one(call: Call) -> str:
    started = call.deps.clock.monotonic()
    async with call.deps.locks.hold(call.claim.uid):
        # From here on its record may outlive its spec and hold (flow.forget).
        call.deps.settled.discard(call.claim.uid)
        if call.deps.known_claims is not None:
            call.deps.known_claims.unprepared(call.claim.uid)
        try:
            found = await call.deps.checkpoints.get(call.key)
        except Exception as err:
            return _unprepare_failed(call, err, trace.get_current_span())
        with _unprepare_span(call, found[0] if found else None) as span:
            try:
                families: set[str] = set()
                recorded_now = None if found is None else found[0]
                host_action = recorded_now is None or acts_on_host(call, recorded_now.plans)
                match machine.on_unprepare(recorded_now, host_action=host_action):
                    case machine.Forget(recorded):
                        assert found is not None
                        families = {d.family for d in recorded.devices}
                        await forget(call, recorded, found[1])
                        logger.info(
                            "claim unprepared", extra={telemetry.ATTR_CLAIM_UID: call.claim.uid}
                        )
                    case machine.Undo(recorded):
                        assert found is not None
                        families = {d.family for d in recorded.devices}
                        await undo(call, recorded, found[1])
                        if any(p.edits.net_devices for p in recorded.plans):
                            devices = {d.device for d in recorded.devices}
                            await status.write(
                                call.deps.claims, call.claim, call.deps.driver, devices, []
                            )
                        logger.info(
                            "claim unprepared", extra={telemetry.ATTR_CLAIM_UID: call.claim.uid}
                        )
                    case machine.Sweep():
                        await sweep(call, None)
                call.deps.metrics.unprepare_seconds.labels(family_label(families)).observe(
                    call.deps.clock.monotonic() - started
                )
                return ""
            except Exception as err:
                return _unprepare_failed(call, err, span)


def _unprepare_span(
    call: Call, checkpoint: Checkpoint | None
) -> AbstractContextManager[trace.Span]:
    """The claim's unprepare span: a child of its prepare span when the checkpoint recorded
    one (one trace per claim), linked to this kubelet call's own trace."""
    attributes = {telemetry.ATTR_CLAIM_UID: call.claim.uid}
    parent = tracing.stored_context(checkpoint.trace_context) if checkpoint else None
    if parent is None:
        return tracer.start_as_current_span("unprepare claim", attributes=attributes)
    this_call = trace.get_current_span().get_span_context()
    links = [trace.Link(this_call)] if this_call.is_valid else []
    return tracer.start_as_current_span(
        "unprepare claim", context=parent, links=links, attributes=attributes
    )


def _unprepare_failed(call: Call, err: Exception, span: trace.Span) -> str:
    code, error = failed("unprepare", call.claim.uid, err)
    call.deps.metrics.errors.labels("unprepare", code).inc()
    span.set_status(trace.StatusCode.ERROR, error)
    return error
