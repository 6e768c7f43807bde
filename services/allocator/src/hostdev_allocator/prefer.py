"""Preferred allocation for the device plugin path: NUMA and PCIe locality, shared devices filled first."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from hostdev_events.alloc import Candidate, PreferDevices, Preferred


def choose(candidates: Sequence[Candidate], must: Sequence[str], size: int) -> list[str]:
    """Stay on the NUMA node (then PCIe root) of the must-include IDs, or where most IDs
    are free; among equals take slots of devices already partly handed out, so one
    shared device fills up before the next is touched."""
    by_id = {c.id: c for c in candidates}
    chosen = [i for i in dict.fromkeys(must) if i in by_id][:size]
    rest = [c for c in candidates if c.id not in chosen]
    anchor = [by_id[i] for i in chosen] or rest
    numa_votes = Counter(c.numa for c in anchor if c.numa is not None)
    root_votes = Counter(c.pcie_root for c in anchor if c.pcie_root)
    home_numa = numa_votes.most_common(1)[0][0] if numa_votes else None
    home_root = root_votes.most_common(1)[0][0] if root_votes else ""
    free = Counter(c.device for c in rest)
    ranked = sorted(
        rest,
        key=lambda c: (
            home_numa is not None and c.numa != home_numa,
            bool(home_root) and c.pcie_root != home_root,
            free[c.device],
            c.device,
            c.id,
        ),
    )
    return chosen + [c.id for c in ranked[: max(size - len(chosen), 0)]]


async def on_prefer(msg: PreferDevices) -> Preferred:
    """Answer GetPreferredAllocation for the gateway."""
    return Preferred(ids=tuple(choose(msg.candidates, msg.must_include, msg.size)))
