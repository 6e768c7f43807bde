"""The short kill-point campaign, as CI runs it: every process SIGKILLed, every kind of point
hit, and no invariant broken; nothing of the node is left running afterwards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostdev_events import killpoints
from hostdev_testing.chaos.campaign import run_campaign, spread_points
from hostdev_testing.chaos.node import PROCESSES
from hostdev_testing.chaos.report import figures


def _children() -> set[int]:
    """Live (not zombie) child processes of this test process."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == os.getpid() and state != "Z":
            found.add(int(entry.name))
    return found


@pytest.mark.timeout(300)
async def test_short_campaign_survives_a_kill_of_every_process_at_every_kind_of_point(
    short_dir: Path,
) -> None:
    """The fault-free round counts well over 200 points (the long mode runs them all); the
    spread kills each of the six processes and hits each kind; violations are none."""
    before = _children()
    campaign = await run_campaign(short_dir / "chaos", spread_points)
    data = figures(campaign)
    assert data["violations"] == []
    assert data["points_counted"] >= 200
    assert set(data["killed"]) == set(PROCESSES)
    kinds_seen = {k for counts in campaign.counts.values() for k in counts}
    assert kinds_seen == set(killpoints.KINDS)
    killed_kinds = {k for kinds in data["killed"].values() for k in kinds}
    assert killed_kinds == kinds_seen
    assert _children() <= before
    assert not [p for p in short_dir.rglob("*") if p.is_socket()]
