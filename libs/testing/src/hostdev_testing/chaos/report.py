"""The campaign's figures: points tried per process and kind, kills survived, violations."""

from __future__ import annotations

from typing import Any

from hostdev_events import killpoints
from hostdev_testing.chaos.campaign import Campaign
from hostdev_testing.chaos.node import PROCESSES


def figures(campaign: Campaign) -> dict[str, Any]:
    """Everything the report prints, as plain data (also written as JSON)."""
    tried: dict[str, dict[str, int]] = {}
    killed: dict[str, dict[str, int]] = {}
    survived: dict[str, int] = {}
    for result in campaign.results:
        p, k = result.point.process, result.point.kind
        tried.setdefault(p, {}).setdefault(k, 0)
        tried[p][k] += 1
        if result.killed:
            killed.setdefault(p, {}).setdefault(k, 0)
            killed[p][k] += 1
            if not result.violations:
                survived[k] = survived.get(k, 0) + 1
    seconds = [r.seconds for r in campaign.results]
    return {
        "points_counted": sum(sum(k.values()) for k in campaign.counts.values()),
        "points_chosen": campaign.chosen,
        "points_tried": len(campaign.results),
        "kills_delivered": sum(r.killed for r in campaign.results),
        "violations": [
            {"point": p.label, "invariant": v.invariant, "detail": v.detail}
            for p, v in campaign.violations
        ],
        "counts": campaign.counts,
        "tried": tried,
        "killed": killed,
        "survived_per_kind": survived,
        "kubelet_retries": sum(r.retries for r in campaign.results),
        "hung_stops": campaign.hung_stops,
        "seconds_total": round(campaign.seconds, 1),
        "seconds_per_point_max": round(max(seconds, default=0.0), 2),
    }


def render(data: dict[str, Any]) -> str:
    """The figures as text tables."""
    kinds = [k for k in killpoints.KINDS if any(k in c for c in data["counts"].values())]
    lines = [
        f"kill points counted in a fault-free round: {data['points_counted']}",
        f"kill points tried: {data['points_tried']} of {data['points_chosen']} chosen, "
        f"kills delivered: {data['kills_delivered']}",
        f"invariants violated: {len(data['violations'])}",
        f"kubelet retries: {data['kubelet_retries']}; "
        f"time: {data['seconds_total']} s (slowest point {data['seconds_per_point_max']} s)",
        "graceful stops that hung and were SIGKILLed: "
        + (", ".join(f"{k} {n}" for k, n in sorted(data["hung_stops"].items())) or "none"),
        "",
        "tried/killed per process and kind:",
        "| process | " + " | ".join(kinds) + " |",
        "|---" * (len(kinds) + 1) + "|",
    ]
    for process in PROCESSES:
        cells = []
        for kind in kinds:
            t = data["tried"].get(process, {}).get(kind, 0)
            k = data["killed"].get(process, {}).get(kind, 0)
            cells.append(f"{t}/{k}" if t else "-")
        lines.append(f"| {process} | " + " | ".join(cells) + " |")
    lines += ["", "faults survived per kind (killed, no invariant broken):"]
    lines += [f"  {kind}: {data['survived_per_kind'].get(kind, 0)}" for kind in kinds]
    for v in data["violations"]:
        lines.append(f"VIOLATION {v['point']}: {v['invariant']}: {v['detail']}")
    return "\n".join(lines)
