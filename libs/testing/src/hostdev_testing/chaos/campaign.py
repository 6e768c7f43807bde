"""The campaign: count the points in a fault-free round, then one round per kill point."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nats.errors

from hostdev_bus import BusError, NatsKv
from hostdev_events import killpoints, subjects
from hostdev_events.alloc import Hold
from hostdev_events.state import Checkpoint
from hostdev_testing.chaos import invariants
from hostdev_testing.chaos.invariants import ANSWERED, RESTARTED, Violation
from hostdev_testing.chaos.node import (
    CALL_TIMEOUT,
    NATS_SERVER,
    READY_TIMEOUT,
    ChaosNode,
    ChaosSetupError,
    chaos_node,
)
from hostdev_testing.chaos.workload import (
    DP_ALLOCATIONS,
    GaveUp,
    Kubelet,
    make_claims,
)
from hostdev_testing.fakesysfs import acceptance_host, snapshot
from hostdev_testing.services import ALL

# nats-server cannot count its own points; it is killed at the preparer's, the service
# that waits on it most (every KV read and write, every request it sends).
NATS_CLOCK = "preparer"


@dataclass(frozen=True, slots=True, order=True)
class KillPoint:
    """SIGKILL `process` at the Nth event of `kind` (of the preparer's, for nats-server)."""

    process: str
    kind: str
    nth: int

    @property
    def label(self) -> str:
        return f"{self.process} at {self.kind} #{self.nth}"


@dataclass(slots=True)
class PointResult:
    """What one kill point did: whether the kill happened, and what broke."""

    point: KillPoint
    killed: bool
    violations: list[Violation]
    seconds: float
    retries: int


Counts = dict[str, dict[str, int]]


@dataclass(slots=True)
class Campaign:
    """The enumeration and the results, for the figures."""

    counts: Counts = field(default_factory=dict)
    results: list[PointResult] = field(default_factory=list)
    seconds: float = 0.0
    chosen: int = 0  # points picked; more than tried when the time budget ran out
    hung_stops: dict[str, int] = field(default_factory=dict)  # SIGTERMs that needed a SIGKILL

    @property
    def violations(self) -> list[tuple[KillPoint, Violation]]:
        return [(r.point, v) for r in self.results for v in r.violations]


def all_points(counts: Counts) -> list[KillPoint]:
    """Every (process, kind, n) the counting round saw, the processes taking turns (and
    their kinds within each), so a run cut short by its time budget still spreads."""
    queues = {
        process: sorted(
            (
                KillPoint(process, kind, n)
                for kind, total in kinds.items()
                for n in range(1, total + 1)
            ),
            key=lambda p: (p.nth, p.kind),
        )
        for process, kinds in sorted(counts.items())
    }
    ordered: list[KillPoint] = []
    while any(queues.values()):
        for queue in queues.values():
            if queue:
                ordered.append(queue.pop(0))
    return ordered


def spread_points(counts: Counts) -> list[KillPoint]:
    """A few points that still kill every process and hit every kind at least once: in
    turns, each process takes its busiest kind not covered yet (on its first turn, its
    busiest at all when it has none), a quarter into its events, until all are covered."""
    chosen: list[KillPoint] = []
    kinds = {k for ks in counts.values() for k, n in ks.items() if n}
    covered: set[str] = set()
    first = True
    while first or covered != kinds:
        for process in sorted(counts):
            mine = [(n, k) for k, n in counts[process].items() if n]
            fresh = sorted(((n, k) for n, k in mine if k not in covered), reverse=True)
            busiest = fresh or (sorted(mine, reverse=True) if first else [])
            if busiest:
                total, kind = busiest[0]
                # A quarter in: during the claims' prepares, where most points are.
                chosen.append(KillPoint(process, kind, (total + 3) // 4))
                covered.add(kind)
        first = False
    return sorted(set(chosen))


def _read_counts(node: ChaosNode, process: str) -> dict[str, int]:
    path = node.count_file(process)
    found: dict[str, int] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            found[line] = found.get(line, 0) + 1
    return found


async def _clear_state(node: ChaosNode) -> None:
    """Remove what a broken round left (after its violations were recorded), so the next
    point starts from the same node as the counting round."""
    await node.stop_all()
    js = node.nc.jetstream()
    for bucket, kind in ((subjects.LEDGER_BUCKET, Hold), (subjects.CHECKPOINT_BUCKET, Checkpoint)):
        kv = await NatsKv.open(js, bucket, kind)
        for key in await kv.keys(subjects.device_key_prefix(node.config.node)):
            await kv.delete(key)
    shutil.rmtree(node.config.cdi_root, ignore_errors=True)
    shutil.rmtree(node.sample.root, ignore_errors=True)
    acceptance_host(node.sample.root)
    await node.services.start(processes=True, timeout=READY_TIMEOUT)


async def _checked(
    node: ChaosNode, check: Callable[[], Awaitable[list[Violation]]], deadline: float = 60.0
) -> list[Violation]:
    """Run a check; a check reads KV and asks the preparer, and its own reads may meet
    nats-server being killed (the preparer's KV read for `dp.list` is a kill point too):
    wait until the node is back and check again, as any client would."""
    give_up_at = time.monotonic() + deadline
    while True:
        await node.wait_up()
        try:
            return await check()
        except (BusError, nats.errors.Error, TimeoutError):
            if time.monotonic() > give_up_at:
                raise


async def _round(
    node: ChaosNode, kubelet: Kubelet, tag: str, before: dict[str, str]
) -> list[Violation]:
    """Prepare every claim and allocate every device-plugin ID, check; undo it all, check."""
    found: list[Violation] = []
    claims = await make_claims(node, tag)
    try:
        for _, claim in claims:
            await kubelet.prepare(claim)
        for resource, device in DP_ALLOCATIONS:
            await kubelet.allocate(resource, device)
    except GaveUp as err:
        found.append(Violation(ANSWERED, str(err)))
    else:
        await node.wait_up()
        found += await _checked(node, lambda: invariants.prepared_complete(node, claims))
    found += await _checked(node, lambda: invariants.single_owner(node))
    for _, claim in claims:
        try:
            await kubelet.unprepare(claim)
        except GaveUp as err:
            found.append(Violation(ANSWERED, str(err)))
    try:
        await kubelet.release_device_plugin()
    except GaveUp as err:
        found.append(Violation(ANSWERED, str(err)))
    await node.wait_up()
    found += await _checked(node, lambda: invariants.nothing_left(node, before))
    return found


async def _run_point(
    node: ChaosNode, kubelet: Kubelet, point: KillPoint, tag: str, before: dict[str, str]
) -> PointResult:
    started = time.monotonic()
    retried = kubelet.calls.retried
    target = NATS_CLOCK if point.process == NATS_SERVER else point.process
    env = {killpoints.KILL_AT: f"{point.kind}:{point.nth}"}
    if point.process == NATS_SERVER:
        env[killpoints.KILL_PID] = str(node.pid(NATS_SERVER))
    restarts = node.restarts.counts.get(point.process, 0)
    node.up.set()
    if point.process == NATS_SERVER:
        node.supervise(NATS_SERVER)  # before the preparer starts: it may kill at start-up
        await node.start_service(target, env)
    elif await node.start_service(target, env):
        node.supervise(target)
    else:  # killed at one of its start-up points
        node.restarts.add(target)
        await node.start_service(target)
    try:
        violations = await _round(node, kubelet, tag, before)
    except ChaosSetupError as err:
        if node.broken is None:
            raise  # the node's own set-up failed, not a restart the point caused
        # A process that dies again at every start is a broken promise of this point,
        # recorded like any other; the node is cleared for the next point.
        violations = [Violation(RESTARTED, str(err))]
        node.repaired()
    await node.settle()
    killed = node.restarts.counts.get(point.process, 0) > restarts
    if not killed:  # still armed (its Nth event never came): start it plain
        await node.start_service(target)
    for name in ALL:
        if not node.alive(name):
            await node.start_service(name)
    return PointResult(
        point, killed, violations, time.monotonic() - started, kubelet.calls.retried - retried
    )


async def count_points(node: ChaosNode, kubelet: Kubelet, before: dict[str, str]) -> Counts:
    """A fault-free round with every service counting its events from a fresh start."""
    await _restart_all(node, {name: node.counting_env(name) for name in ALL})
    node.up.set()
    broken = await _round(node, kubelet, "count", before)
    if broken:
        raise RuntimeError(f"the fault-free round broke invariants: {broken}")
    counts = {name: _read_counts(node, name) for name in ALL}
    counts[NATS_SERVER] = dict(counts[NATS_CLOCK])
    await _restart_all(node, {})
    return counts


async def _restart_all(node: ChaosNode, env: dict[str, dict[str, str]]) -> None:
    """Restart the five services together (faster than one by one), each with its `env`."""
    await node.stop_all()
    node.services.per_service_env = env
    await node.services.start(processes=True, timeout=READY_TIMEOUT)


async def run_campaign(
    workdir: Path,
    choose: Callable[[Counts], Sequence[KillPoint]],
    *,
    call_timeout: float = CALL_TIMEOUT,
    deadline: float = 60.0,
    progress: Callable[[PointResult, int, int], None] | None = None,
    budget: float | None = None,
    jobs: int = 1,
) -> Campaign:
    """Bring `jobs` independent nodes up under `workdir` (each its own nats-server, API
    server, tree and sockets), count, then run every point `choose` picks, each node
    taking the next one as it finishes its last (within `budget` seconds when given: no
    point is started after it). The nodes wait on their own timeouts, so two of them
    keep a small machine busy where one mostly waits."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    campaign = Campaign()
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(chaos_node(workdir if jobs == 1 else workdir / f"n{i}"))
            for i in range(jobs)
        ]
        kubelets = [Kubelet(n, call_timeout=call_timeout, deadline=deadline) for n in nodes]
        befores = [snapshot(n.sample.root) for n in nodes]

        async def count(i: int) -> Counts:
            await nodes[i].services.start(processes=True, timeout=READY_TIMEOUT)
            return await count_points(nodes[i], kubelets[i], befores[i])

        # Each node proves its own fault-free round; the first one's counts are the points.
        campaign.counts = (await asyncio.gather(*(count(i) for i in range(jobs))))[0]
        points = list(enumerate(choose(campaign.counts), 1))
        campaign.chosen = len(points)

        async def work(i: int) -> None:
            while points:
                if budget is not None and time.monotonic() - started > budget:
                    return
                index, point = points.pop(0)
                result = await _run_point(nodes[i], kubelets[i], point, f"k{index}", befores[i])
                campaign.results.append(result)
                if progress is not None:
                    progress(result, index, campaign.chosen)
                if result.violations:  # recorded and reported first: clearing may fail too
                    await _clear_state(nodes[i])

        await asyncio.gather(*(work(i) for i in range(jobs)))
        for node in nodes:
            for name, n in node.hung_stops.counts.items():
                campaign.hung_stops[name] = campaign.hung_stops.get(name, 0) + n
    campaign.results.sort(key=lambda r: r.point)
    campaign.seconds = time.monotonic() - started
    return campaign
