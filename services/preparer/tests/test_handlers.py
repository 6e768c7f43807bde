"""The prepare and unprepare handlers on an in-memory KV, an in-memory bus and a manual clock.

The responders stand in for the allocator and the CDI writer: they answer as those services
do and record what they were asked. The host-path family is the real one, on a real tree.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from hostdev_bus import KeyExists, MemoryKv, Unavailable
from hostdev_events import subjects
from hostdev_events.alloc import Released, ReleaseDevices, Reserved, ReserveDevices
from hostdev_events.base import ErrorCode
from hostdev_events.cdi import CdiSpecsRemoved, CdiSpecsWritten, RemoveCdiSpecs, WriteCdiSpecs
from hostdev_events.claims import ClaimRef, PrepareClaims, UnprepareClaims
from hostdev_events.inventory import Device
from hostdev_events.state import Checkpoint, ClaimStep
from hostdev_families import HostPathSpec
from hostdev_families.hostpath import HostPathFamily
from hostdev_kube import NotFound, ResourceClaim
from hostdev_preparer import handlers
from hostdev_preparer.flow import Deps
from hostdev_preparer.inventory import InventoryView
from hostdev_preparer.locks import KeyedLocks
from hostdev_runtime.errors import HandlerError
from hostdev_runtime.metrics import ClaimMetrics
from hostdev_sysfs import HostRoot
from hostdev_testing.clock import ManualClock
from hostdev_testing.fakehost import FakeHost
from hostdev_testing.memorybus import MemoryBus

NODE = "node-1"
DRIVER = "hostdev.k8s.io"
BOOT = "boot-1"
CLAIM = ClaimRef(namespace="ns", name="vm", uid="uid-1")
RESERVE, RELEASE = subjects.alloc_reserve(NODE), subjects.alloc_release(NODE)
WRITE, REMOVE = subjects.cdi_write(NODE), subjects.cdi_remove(NODE)


class Claims:
    """The API as the handlers read it: claims by namespace/name, a status write kept."""

    def __init__(self) -> None:
        self.claims: dict[tuple[str, str], ResourceClaim] = {}

    async def get_claim(self, namespace: str, name: str) -> ResourceClaim:
        found = self.claims.get((namespace, name))
        if found is None:
            raise NotFound(404, "NotFound", f"resourceclaims {name} not found")
        return found

    async def get_claim_object(self, namespace: str, name: str) -> dict[str, Any]:
        return msgspec.to_builtins(await self.get_claim(namespace, name))  # type: ignore[no-any-return]

    async def replace_claim_status(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        """Status writes are for network devices only; none here."""


class Node:
    """Deps wired to in-memory parts, with responders that answer and remember."""

    def __init__(self, tmp_path: Path) -> None:
        FakeHost(tmp_path).device_node("/dev/kvm")
        family = HostPathFamily(HostRoot(tmp_path), (HostPathSpec(path="/dev/kvm", name="kvm"),))
        self.devices = MemoryKv[Device]()
        self.checkpoints = MemoryKv[Checkpoint]()
        self.bus = MemoryBus()
        self.clock = ManualClock()
        self.claims = Claims()
        self.registry = CollectorRegistry()
        self.family = family
        self.reserve_refusal = ""
        self.bus.serve(RESERVE, ReserveDevices, self._reserve)
        self.bus.serve(RELEASE, ReleaseDevices, self._release)
        self.bus.serve(WRITE, WriteCdiSpecs, self._write)
        self.bus.serve(REMOVE, RemoveCdiSpecs, self._remove)
        self.deps = Deps(
            node=NODE,
            driver=DRIVER,
            bus=self.bus,
            checkpoints=self.checkpoints,
            inventory=InventoryView(NODE, self.devices),
            claims=self.claims,
            families={family.name: family},
            clock=self.clock,
            locks=KeyedLocks(),
            metrics=ClaimMetrics(self.registry),
            boot_id=BOOT,
        )

    async def publish_inventory(self) -> None:
        for device in self.family.discover():
            await self.devices.create(subjects.device_key(NODE, device.name), device)

    def allocate(self, uid: str = CLAIM.uid, device: str = "kvm") -> None:
        """The claim in the API, allocated one device of this node."""
        self.claims.claims[(CLAIM.namespace, CLAIM.name)] = msgspec.convert(
            {
                "metadata": {"name": CLAIM.name, "namespace": CLAIM.namespace, "uid": uid},
                "status": {
                    "allocation": {
                        "devices": {
                            "results": [
                                {"request": "r", "driver": DRIVER, "pool": NODE, "device": device}
                            ]
                        }
                    }
                },
            },
            ResourceClaim,
        )

    async def record(self) -> Checkpoint | None:
        found = await self.checkpoints.get(subjects.checkpoint_key(NODE, CLAIM.uid))
        return None if found is None else found[0]

    def errors(self, operation: str, code: str) -> float:
        value = self.registry.get_sample_value(
            "hostdev_prepare_errors_total", {"operation": operation, "kind": code}
        )
        return value or 0.0

    async def _reserve(self, msg: ReserveDevices) -> Reserved:
        if self.reserve_refusal:
            raise HandlerError(ErrorCode.CONFLICT, self.reserve_refusal)
        return Reserved(owner=msg.owner, devices=tuple(d.device for d in msg.devices))

    async def _release(self, msg: ReleaseDevices) -> Released:
        return Released(owner=msg.owner, devices=msg.devices or ())

    async def _write(self, msg: WriteCdiSpecs) -> CdiSpecsWritten:
        return CdiSpecsWritten(owner=msg.owner, paths=(f"/cdi/{msg.owner}.json",))

    async def _remove(self, msg: RemoveCdiSpecs) -> CdiSpecsRemoved:
        return CdiSpecsRemoved(owner=msg.owner, paths=(f"/cdi/{msg.owner}.json",))


@pytest.fixture
async def node(tmp_path: Path) -> Node:
    made = Node(tmp_path)
    await made.publish_inventory()
    made.allocate()
    return made


async def _prepare(node: Node, timeout_ms: int = 10_000) -> Any:
    reply = await handlers.on_prepare(
        PrepareClaims(claims=(CLAIM,), timeout_ms=timeout_ms), node.deps
    )
    return reply.outcomes[CLAIM.uid]


async def test_new_claim_is_reserved_written_and_recorded_completed_in_this_boot(
    node: Node,
) -> None:
    """A claim with no record is planned from the API, reserved, its spec written, and the
    record completed with the node's boot and the answer given."""
    outcome = await _prepare(node)
    assert not outcome.error
    (device,) = outcome.devices
    assert (device.device, device.request_names) == ("kvm", ("r",))
    assert set(node.bus.subjects()) == {RESERVE, WRITE}
    record = await node.record()
    assert record is not None
    assert (record.step, record.boot_id, record.outcome) == (ClaimStep.COMPLETED, BOOT, outcome)


async def test_repeated_prepare_answers_the_record_without_any_request_or_api_read(
    node: Node,
) -> None:
    """The determinism contract: a second call returns the first answer and touches nothing,
    even when the claim has since gone from the API."""
    first = await _prepare(node)
    asked = len(node.bus.requests)
    node.claims.claims.clear()
    assert await _prepare(node) == first
    assert len(node.bus.requests) == asked


async def test_record_from_an_earlier_boot_is_carried_out_again_with_the_same_answer(
    node: Node,
) -> None:
    """After a reboot the recorded plan is reserved and written again, and the record now
    names this boot; the answer is the same."""
    first = await _prepare(node)
    record = await node.record()
    assert record is not None
    key = subjects.checkpoint_key(NODE, CLAIM.uid)
    found = await node.checkpoints.get(key)
    assert found is not None
    earlier = msgspec.structs.replace(record, boot_id="boot-0")
    await node.checkpoints.update(key, earlier, last=found[1])
    node.bus.requests.clear()
    assert await _prepare(node) == first
    assert set(node.bus.subjects()) == {RESERVE, WRITE}
    redone = await node.record()
    assert redone is not None
    assert redone.boot_id == BOOT


async def test_prepare_cut_short_is_resumed_from_its_record_not_from_the_api(node: Node) -> None:
    """A record left in `preparing` is completed as recorded, even if the API claim was
    replaced meanwhile (a read now would refuse it)."""
    first = await _prepare(node)
    key = subjects.checkpoint_key(NODE, CLAIM.uid)
    found = await node.checkpoints.get(key)
    assert found is not None
    cut = msgspec.structs.replace(found[0], step=ClaimStep.PREPARING, outcome=None)
    await node.checkpoints.update(key, cut, last=found[1])
    node.allocate(uid="uid-replaced")
    assert await _prepare(node) == first


async def test_undo_cut_short_is_finished_before_planning_afresh(node: Node) -> None:
    """A record left in `unpreparing` is undone (spec removed, devices released) and the
    claim planned again from the API."""
    await _prepare(node)
    key = subjects.checkpoint_key(NODE, CLAIM.uid)
    found = await node.checkpoints.get(key)
    assert found is not None
    await node.checkpoints.update(
        key, msgspec.structs.replace(found[0], step=ClaimStep.UNPREPARING), last=found[1]
    )
    node.bus.requests.clear()
    outcome = await _prepare(node)
    assert not outcome.error
    assert node.bus.subjects()[:2] in ([REMOVE, RELEASE], [RELEASE, REMOVE])
    assert set(node.bus.subjects()[2:]) == {RESERVE, WRITE}


async def test_refused_reservation_rolls_back_logs_a_warning_and_counts_its_code(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    """A claim the allocator refuses gets the allocator's reason; the spec written meanwhile
    is removed, the record dropped, and one WARNING names the claim and the code."""
    node.reserve_refusal = "kvm is held by uid-0"
    caplog.set_level(logging.WARNING, logger="hostdev_preparer")
    outcome = await _prepare(node)
    assert outcome.error == "kvm is held by uid-0"
    assert await node.record() is None
    assert REMOVE in node.bus.subjects()
    (warning,) = [r for r in caplog.records if r.getMessage() == "claim failed"]
    assert warning.levelno == logging.WARNING
    assert (vars(warning)["dra.claim.uid"], vars(warning)["code"]) == (CLAIM.uid, "conflict")
    assert node.errors("prepare", "conflict") == 1.0


async def test_claim_gone_from_the_api_fails_as_not_found_and_records_nothing(node: Node) -> None:
    """A claim the API no longer has is refused with its name; nothing is reserved."""
    node.claims.claims.clear()
    outcome = await _prepare(node)
    assert "ns/vm not found in the API" in outcome.error
    assert node.bus.requests == []
    assert await node.record() is None
    assert node.errors("prepare", "not-found") == 1.0


async def test_deadline_passed_on_the_clock_fails_the_claim_as_a_timeout(node: Node) -> None:
    """Time is the clock's: an API read that uses up the kubelet's deadline leaves no time
    for any request; the claim fails as a timeout. A host path's one record is written with
    its spec and hold, none of which was sent: none is left, as nothing was done."""
    reads = node.claims.get_claim

    async def slow_read(namespace: str, name: str) -> ResourceClaim:
        node.clock.advance(5.0)
        return await reads(namespace, name)

    node.claims.get_claim = slow_read  # type: ignore[method-assign]
    outcome = await _prepare(node, timeout_ms=1_000)
    assert outcome.error == "the kubelet's deadline passed"
    assert node.bus.requests == []
    assert node.errors("prepare", "timeout") == 1.0
    assert await node.record() is None


async def test_another_preparer_recording_first_refuses_as_stale_and_leaves_its_work(
    node: Node,
) -> None:
    """When another instance records the claim between our read and our write, the call is
    refused with a retry hint. A host path is reserved and written with its one record:
    the hold and spec are the claim's, the same as the other instance's, so nothing is
    removed or released under it."""

    class Racing(MemoryKv[Checkpoint]):
        async def create(self, key: str, value: Checkpoint) -> int:
            # The other instance's record, still preparing.
            theirs = msgspec.structs.replace(value, step=ClaimStep.PREPARING, outcome=None)
            await super().create(key, theirs)
            raise KeyExists(key, "already has a value")

    node.deps = dataclasses.replace(node.deps, checkpoints=Racing())
    outcome = await _prepare(node)
    assert "another preparer is preparing this claim" in outcome.error
    assert set(node.bus.subjects()) == {RESERVE, WRITE}
    assert node.errors("prepare", "stale") == 1.0


async def test_unprepare_undoes_the_record_and_an_unknown_claim_succeeds(node: Node) -> None:
    """Unprepare removes the spec, releases the devices and drops the record; again, with
    no record left, it succeeds, sweeping the owner's specs and holds (a prepare with no
    host action cut short before its record leaves them)."""
    await _prepare(node)
    node.bus.requests.clear()
    call = UnprepareClaims(claims=(CLAIM,), timeout_ms=10_000)
    assert (await handlers.on_unprepare(call, node.deps)).errors == {CLAIM.uid: ""}
    assert set(node.bus.subjects()) == {REMOVE, RELEASE}
    assert await node.record() is None
    node.bus.requests.clear()
    assert (await handlers.on_unprepare(call, node.deps)).errors == {CLAIM.uid: ""}
    assert set(node.bus.subjects()) == {REMOVE, RELEASE}
    (release,) = [m for s, m in node.bus.requests if s == RELEASE]
    assert release == ReleaseDevices(owner=CLAIM.uid, devices=None)


class FailingDeletes(MemoryKv[Checkpoint]):
    """Checkpoints whose deletes fail while `failing` is set (NATS away, say)."""

    failing = True

    async def delete(self, key: str, last: int | None = None) -> None:
        if self.failing:
            raise Unavailable(key, "no connection to NATS")
        await super().delete(key, last)


async def test_record_written_at_once_is_redone_by_a_process_that_did_not_see_it_through(
    node: Node,
) -> None:
    """A host path's one record is written while its spec and hold are: another process
    (here: one started afresh, after a crash say) cannot know both landed, so it reserves
    and writes again from the record before giving the recorded answer."""
    first = await _prepare(node)
    node.deps = dataclasses.replace(node.deps, settled=set())
    node.bus.requests.clear()
    node.claims.claims.clear()  # from the record, not from the API
    assert await _prepare(node) == first
    assert set(node.bus.subjects()) == {RESERVE, WRITE}
    node.bus.requests.clear()
    assert await _prepare(node) == first  # seen through now: answered as it stands
    assert node.bus.requests == []


async def test_record_left_by_a_failed_rollback_is_redone_before_it_is_answered(
    node: Node,
) -> None:
    """A refused reservation whose record cannot be removed leaves a completed record with
    no hold behind it: the next prepare does not answer it but reserves again."""
    store = FailingDeletes()
    node.deps = dataclasses.replace(node.deps, checkpoints=store)
    node.checkpoints = store
    node.reserve_refusal = "kvm is held by uid-0"
    assert (await _prepare(node)).error == "kvm is held by uid-0"
    assert await node.record() is not None
    node.reserve_refusal = ""
    node.bus.requests.clear()
    outcome = await _prepare(node)
    assert not outcome.error
    assert set(node.bus.subjects()) == {RESERVE, WRITE}


async def test_unprepare_cut_short_leaves_a_record_the_next_prepare_redoes(node: Node) -> None:
    """A host path's unprepare removes its record, spec and hold at once: when the record
    stays (its delete failed) and the others went, the unprepare fails, and a prepare
    then redoes the spec and the hold rather than answering a record with nothing behind."""
    store = FailingDeletes()
    store.failing = False
    node.deps = dataclasses.replace(node.deps, checkpoints=store)
    node.checkpoints = store
    first = await _prepare(node)
    store.failing = True
    call = UnprepareClaims(claims=(CLAIM,), timeout_ms=10_000)
    (error,) = (await handlers.on_unprepare(call, node.deps)).errors.values()
    assert "no connection to NATS" in error
    assert set(node.bus.subjects()) >= {REMOVE, RELEASE}
    node.bus.requests.clear()
    assert await _prepare(node) == first
    assert set(node.bus.subjects()) == {RESERVE, WRITE}
