"""Concurrent prepare → unprepare loops, timed per call; shared by the full stack and the floor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.cpu import CpuMeter, CpuUse
from bench.stack import Work
from bench.stats import Summary, summarize

MAX_ERRORS_KEPT = 5


class Target(Protocol):
    """Something that prepares and unprepares one claim; returns the error text, empty if none."""

    async def prepare(self, work: Work) -> str: ...

    async def unprepare(self, work: Work) -> str: ...


@dataclass(slots=True)
class LevelResult:
    """One concurrency level: per-call latencies, wall time and failures."""

    callers: int
    wall_s: float = 0.0
    prepare_s: list[float] = field(default_factory=list)
    unprepare_s: list[float] = field(default_factory=list)
    prepare_by_kind: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    cpu: CpuUse | None = None

    @property
    def cycles(self) -> int:
        return len(self.prepare_s)

    @property
    def cycles_per_s(self) -> float:
        return self.cycles / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def prepare(self) -> Summary:
        return summarize(self.prepare_s)

    @property
    def unprepare(self) -> Summary:
        return summarize(self.unprepare_s)

    def failed(self, error: str) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERRORS_KEPT:
            self.error_samples.append(error)

    def as_json(self) -> dict[str, Any]:
        return {
            "callers": self.callers,
            "cycles": self.cycles,
            "wall_s": round(self.wall_s, 4),
            "cycles_per_s": round(self.cycles_per_s, 2),
            "prepare_ms": self.prepare.as_json(),
            "unprepare_ms": self.unprepare.as_json(),
            "prepare_ms_by_device_kind": {
                kind: summarize(samples).as_json()
                for kind, samples in sorted(self.prepare_by_kind.items())
            },
            "errors": self.errors,
            "error_samples": self.error_samples,
            "cpu": self.cpu.as_json(self.cycles) if self.cpu else None,
        }


async def run_level(
    target: Target, work: Sequence[Sequence[Work]], pids: Mapping[str, int] | None = None
) -> LevelResult:
    """One task per caller, each looping prepare → unprepare over its own claims.

    With `pids`, the CPU time of those processes (and of the machine) is measured too.
    """
    result = LevelResult(callers=len(work))

    async def caller(items: Sequence[Work]) -> None:
        for item in items:
            t0 = time.perf_counter()
            error = await target.prepare(item)
            t1 = time.perf_counter()
            if error:
                result.failed(f"prepare {item.claim.name}: {error}")
            undone = await target.unprepare(item)
            t2 = time.perf_counter()
            if undone:
                result.failed(f"unprepare {item.claim.name}: {undone}")
            result.prepare_s.append(t1 - t0)
            result.unprepare_s.append(t2 - t1)
            result.prepare_by_kind.setdefault(item.kind, []).append(t1 - t0)

    meter = CpuMeter(pids or {})
    meter.start()
    started = time.perf_counter()
    await asyncio.gather(*(caller(items) for items in work))
    result.wall_s = time.perf_counter() - started
    if pids:
        result.cpu = meter.stop()
    return result
