"""The orphan checks end with the service, even when the stop's cancel is lost."""

from __future__ import annotations

import asyncio
from typing import cast

from prometheus_client import CollectorRegistry

from hostdev_bus import MemoryKv
from hostdev_events.alloc import Hold
from hostdev_events.inventory import Device
from hostdev_events.state import Checkpoint
from hostdev_preparer.claimwatch import ClaimCache
from hostdev_preparer.flow import ClaimReader, Deps
from hostdev_preparer.inventory import InventoryView
from hostdev_preparer.locks import KeyedLocks
from hostdev_preparer.orphans import OrphanMetrics, Orphans, Timings
from hostdev_runtime.metrics import ClaimMetrics
from hostdev_testing.clock import ManualClock
from hostdev_testing.memorybus import MemoryBus

NODE = "node-a"


class SlowKeys(MemoryKv[Checkpoint]):
    """Checkpoints whose key listing (a NATS request) answers only when told to."""

    def __init__(self) -> None:
        super().__init__()
        self.asked, self.answer = asyncio.Event(), asyncio.Event()

    async def keys(self, prefix: str = "") -> list[str]:
        self.asked.set()
        await self.answer.wait()
        return await super().keys(prefix)


async def test_a_check_whose_stop_cancel_was_lost_ends_the_loop_instead_of_sleeping() -> None:
    """The service stops while a check waits on NATS, and the answer wins over the cancel
    (asyncio.wait_for on Python 3.11): the check completes as if never cancelled, and the
    loop must end there rather than sleep a scan period the runner would wait out."""
    clock, checkpoints, registry = ManualClock(), SlowKeys(), CollectorRegistry()
    deps = Deps(
        node=NODE,
        driver="hostdev.k8s.io",
        bus=MemoryBus(),
        checkpoints=checkpoints,
        inventory=InventoryView(NODE, MemoryKv[Device]()),
        claims=cast(ClaimReader, object()),  # never asked: there is no checkpoint
        families={},
        clock=clock,
        locks=KeyedLocks(),
        metrics=ClaimMetrics(registry),
    )
    orphans = Orphans(
        deps=deps,
        ledger=MemoryKv[Hold](),
        cache=ClaimCache(driver="hostdev.k8s.io", node=NODE),
        timings=Timings(grace=300, stuck_preparing=180, scan=30),
        metrics=OrphanMetrics(registry),
    )
    stopping = asyncio.Event()
    running = asyncio.create_task(orphans.run(stopping))
    try:
        async with asyncio.timeout(5):
            await checkpoints.asked.wait()
        stopping.set()  # the stop; its cancel is lost, so the check goes on
        checkpoints.answer.set()
        async with asyncio.timeout(5):
            await running
    finally:
        running.cancel()
    assert not running.cancelled()  # it ended on its own, not by the cancel in `finally`
