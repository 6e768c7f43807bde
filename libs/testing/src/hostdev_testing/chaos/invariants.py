"""The promises checked after every kill point, each broken one a `Violation`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hostdev_bus import NatsBus, NatsKv
from hostdev_events import dp, subjects
from hostdev_events.alloc import COUNTER_ENTRY_PREFIX, Hold
from hostdev_events.dp import Allocations, ListAllocations
from hostdev_events.state import Checkpoint, ClaimStep
from hostdev_testing.chaos.node import ChaosNode
from hostdev_testing.chaos.workload import DP_ALLOCATIONS, ClaimPlan
from hostdev_testing.cluster import Claim
from hostdev_testing.fakenetlink import DEFAULT, FakeNetlink
from hostdev_testing.fakesysfs import snapshot

SINGLE_OWNER = "held by one owner"
PREPARED_COMPLETE = "prepared claim has spec, host state and checkpoint"
NOTHING_LEFT = "nothing left after unprepare"
ANSWERED = "kubelet answered within its deadline"
RESTARTED = "a killed process serves again after its restart"
INVARIANTS = (SINGLE_OWNER, PREPARED_COMPLETE, NOTHING_LEFT, ANSWERED)


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken promise: which one and what was seen."""

    invariant: str
    detail: str


async def _ledger(node: ChaosNode) -> dict[str, Hold]:
    kv = await NatsKv.open(node.nc.jetstream(), subjects.LEDGER_BUCKET, Hold)
    found: dict[str, Hold] = {}
    for key in await kv.keys(subjects.device_key_prefix(node.config.node)):
        entry = await kv.get(key)
        if entry is not None:
            found[key] = entry[0]
    return found


async def _checkpoints(node: ChaosNode) -> dict[str, Checkpoint]:
    kv = await NatsKv.open(node.nc.jetstream(), subjects.CHECKPOINT_BUCKET, Checkpoint)
    found: dict[str, Checkpoint] = {}
    for key in await kv.keys(subjects.device_key_prefix(node.config.node)):
        entry = await kv.get(key)
        if entry is not None:
            found[key] = entry[0]
    return found


async def _counter_capacity(node: ChaosNode) -> dict[str, dict[str, int]]:
    capacity: dict[str, dict[str, int]] = {}
    for piece in await node.cluster.slices():
        for counter_set in piece["spec"].get("sharedCounters", []):
            capacity[counter_set["name"]] = {
                name: int(value["value"]) for name, value in counter_set["counters"].items()
            }
    return capacity


async def single_owner(node: ChaosNode) -> list[Violation]:
    """No device or IOMMU group has two holders unless shareable; no counter is overdrawn."""
    found: list[Violation] = []
    capacity = await _counter_capacity(node)
    for key, hold in (await _ledger(node)).items():
        entry = key.split(".", 1)[1]
        if entry.startswith(COUNTER_ENTRY_PREFIX):
            limits = capacity.get(entry[len(COUNTER_ENTRY_PREFIX) :], {})
            for counter, limit in limits.items():
                used = sum(u.get(counter, 0) for u in hold.used.values())
                if used > limit:
                    found.append(
                        Violation(SINGLE_OWNER, f"{entry}: {counter} {used} used of {limit}")
                    )
        elif not hold.shareable and len(set(hold.holders)) > 1:
            found.append(Violation(SINGLE_OWNER, f"{entry} held by {sorted(hold.holders)}"))
    return found


def _driver(root: Path, bdf: str) -> str:
    link = root / "sys/bus/pci/devices" / bdf / "driver"
    return link.resolve().name if link.is_symlink() else ""


def _host_state(node: ChaosNode, plan: ClaimPlan) -> str | None:
    """What is missing of a prepared claim's host state, or None."""
    sample, root = node.sample, node.sample.root
    if plan.family == "pci":
        for bdf in (sample.nvme, sample.nvme_sibling):
            if _driver(root, bdf) != "vfio-pci":
                return f"{bdf} is on {_driver(root, bdf) or 'no driver'}, not vfio-pci"
    elif plan.family == "sriov-vfio":
        bdf = sample.vfs[3]
        if _driver(root, bdf) != "vfio-pci":
            return f"{bdf} is on {_driver(root, bdf) or 'no driver'}, not vfio-pci"
    elif plan.family == "sriov-netdevice":
        got = FakeNetlink(root).get_vf(sample.pf_netdev, 2)
        if (got.vlan, got.mac, got.trust) != (100, "52:54:00:12:34:56", True):
            return f"VF 2 settings are {got}"
    elif plan.family == "mdev":
        devices = root / "sys/bus/mdev/devices"
        if not devices.is_dir() or not any(devices.iterdir()):
            return "no mdev was created"
    return None


async def prepared_complete(
    node: ChaosNode, claims: Sequence[tuple[ClaimPlan, Claim]]
) -> list[Violation]:
    """Every claim the kubelet was told is prepared has its spec, host state and checkpoint;
    every device-plugin ID allocated is recorded."""
    found: list[Violation] = []
    checkpoints = await _checkpoints(node)
    for plan, claim in claims:
        what = f"{plan.family} claim {claim.uid}"
        if not list(node.config.cdi_root.glob(f"*_{claim.uid}.json")):
            found.append(Violation(PREPARED_COMPLETE, f"{what}: no CDI spec"))
        point = checkpoints.get(subjects.checkpoint_key(node.config.node, claim.uid))
        if point is None or point.step != ClaimStep.COMPLETED:
            step = "none" if point is None else point.step
            found.append(Violation(PREPARED_COMPLETE, f"{what}: checkpoint {step}"))
        missing = _host_state(node, plan)
        if missing:
            found.append(Violation(PREPARED_COMPLETE, f"{what}: {missing}"))
    bus = NatsBus(node.nc)
    for resource, device in DP_ALLOCATIONS:
        listed = await bus.request(
            subjects.dp_list(node.config.node), ListAllocations(resource=resource), Allocations, 10
        )
        if device not in listed.ids:
            seen = await _dp_record(node, checkpoints, resource, device, listed.ids)
            found.append(Violation(PREPARED_COMPLETE, f"{resource} {device}: not listed; {seen}"))
    return found


async def _dp_record(
    node: ChaosNode,
    checkpoints: dict[str, Checkpoint],
    resource: str,
    device: str,
    listed: Sequence[str],
) -> str:
    """What the record of a device-plugin ID `dp.list` missed looks like, to tell a lost
    record from a listing that missed one: the checkpoint as the check's own listing saw
    it, as a direct read sees it now, and what a second `dp.list` says."""
    key = subjects.checkpoint_key(node.config.node, dp.owner(resource, device))
    kv = await NatsKv.open(node.nc.jetstream(), subjects.CHECKPOINT_BUCKET, Checkpoint)
    direct = await kv.get(key)
    again = await NatsBus(node.nc).request(
        subjects.dp_list(node.config.node), ListAllocations(resource=resource), Allocations, 10
    )
    listed_point = checkpoints.get(key)
    return (
        f"dp.list gave {sorted(listed)}; checkpoint in the check's listing: "
        f"{listed_point.step if listed_point else 'none'}; read directly: "
        f"{direct[0].step if direct else 'none'}; dp.list again: {sorted(again.ids)}"
    )


async def nothing_left(node: ChaosNode, before: dict[str, str]) -> list[Violation]:
    """No spec, hold or checkpoint; the tree as before; VF settings reverted; no mdev."""
    found: list[Violation] = []
    cdi = node.config.cdi_root
    files = sorted(str(p.relative_to(cdi)) for p in cdi.rglob("*") if p.is_file())
    if files:
        found.append(Violation(NOTHING_LEFT, f"CDI files left: {files}"))
    # The allocator writes a released entry empty rather than deleting it.
    holds = sorted(
        f"{k.split('.', 1)[1]} by {sorted(h.holders or h.used)}"
        for k, h in (await _ledger(node)).items()
        if h.holders or h.used
    )
    if holds:
        found.append(Violation(NOTHING_LEFT, f"ledger holds left: {holds}"))
    points = sorted(k.split(".", 1)[1] for k in await _checkpoints(node))
    if points:
        found.append(Violation(NOTHING_LEFT, f"checkpoints left: {points}"))
    settings = {k: v for k, v in FakeNetlink(node.sample.root).settings().items() if v != DEFAULT}
    if settings:
        found.append(Violation(NOTHING_LEFT, f"VF settings not reverted: {settings}"))
    mdevs = node.sample.root / "sys/bus/mdev/devices"
    if mdevs.is_dir() and any(mdevs.iterdir()):
        found.append(
            Violation(NOTHING_LEFT, f"mdevs left: {sorted(p.name for p in mdevs.iterdir())}")
        )
    now = snapshot(node.sample.root)
    if now != before:
        changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        found.append(Violation(NOTHING_LEFT, f"sysfs tree differs at {changed[:6]}"))
    return found
