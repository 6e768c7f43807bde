"""`./dev chaos [--short]`: run the kill-point campaign and print its figures."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path

from hostdev_testing.chaos.campaign import PointResult, all_points, run_campaign, spread_points
from hostdev_testing.chaos.report import figures, render


def _progress(result: PointResult, index: int, total: int) -> None:
    state = "killed" if result.killed else "not reached"
    broken = f", {len(result.violations)} VIOLATED" if result.violations else ""
    print(
        f"[{index}/{total}] {result.point.label}: {state}{broken} ({result.seconds:.1f} s)",
        flush=True,
    )
    for violation in result.violations:
        print(f"    {violation.invariant}: {violation.detail}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="a spread subset, as CI runs")
    parser.add_argument("--report", type=Path, default=Path("chaos-report.json"))
    parser.add_argument(
        "--budget-minutes", type=float, default=None, help="start no point after this long"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="independent nodes running points side by side (each its own nats-server)",
    )
    args = parser.parse_args(argv)
    # A short directory: the gateway's unix socket paths must fit in 108 bytes.
    workdir = Path(tempfile.mkdtemp(prefix="hdchaos", dir="/tmp"))
    try:
        campaign = asyncio.run(
            run_campaign(
                workdir,
                spread_points if args.short else all_points,
                progress=_progress,
                budget=None if args.budget_minutes is None else args.budget_minutes * 60,
                jobs=args.jobs,
            )
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    data = figures(campaign)
    args.report.write_text(json.dumps(data, indent=2) + "\n")
    print(render(data))
    return 1 if data["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
