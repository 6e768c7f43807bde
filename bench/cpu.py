"""CPU time of processes and of the whole machine, from /proc, to tell where a cycle's CPU goes."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads); None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


async def until_quiet(
    pids: Mapping[str, int], quiet_s: float = 0.5, limit_s: float = 30.0
) -> float:
    """Wait until the processes together used under 5 % of one CPU for `quiet_s` (at most
    `limit_s`); the seconds waited. A start-up's work (the preparer listing every claim,
    the emulator answering) is then over before a level is timed, as on a node that has
    run for a while."""
    started = time.monotonic()
    last = sum(process_cpu_s(pid) or 0.0 for pid in pids.values())
    while time.monotonic() - started < limit_s:
        await asyncio.sleep(quiet_s)
        now = sum(process_cpu_s(pid) or 0.0 for pid in pids.values())
        if now - last < 0.05 * quiet_s:
            break
        last = now
    return time.monotonic() - started


def machine_cpu_s() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the machine since boot, summed over its CPUs."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return 0.0, 0.0
    values = [int(v) for v in first[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = values[:7]
    steal = values[7] if len(values) > 7 else 0
    return (user + nice + system + irq + softirq) / _TICK, steal / _TICK


@dataclass(frozen=True, slots=True)
class CpuUse:
    """CPU seconds each named process used over `wall_s`, and what the rest of the machine did."""

    processes_s: dict[str, float]
    machine_busy_s: float
    steal_s: float
    wall_s: float

    @property
    def other_cores(self) -> float:
        """Average CPUs kept busy by processes outside the benchmark (other tenants, say)."""
        ours = sum(self.processes_s.values())
        return max(self.machine_busy_s - ours, 0.0) / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def steal_cores(self) -> float:
        """Average CPUs the hypervisor took away."""
        return self.steal_s / self.wall_s if self.wall_s > 0 else 0.0

    def per_cycle_ms(self, cycles: int) -> dict[str, float]:
        if cycles <= 0:
            return {}
        return {name: s * 1000 / cycles for name, s in self.processes_s.items()}

    def as_json(self, cycles: int) -> dict[str, Any]:
        per_cycle = self.per_cycle_ms(cycles)
        return {
            "ms_per_cycle": {k: round(v, 3) for k, v in per_cycle.items()},
            "total_ms_per_cycle": round(sum(per_cycle.values()), 3),
            "other_load_cores": round(self.other_cores, 3),
            "steal_cores": round(self.steal_cores, 3),
        }


class CpuMeter:
    """Reads the counters at `start()` and again at `stop()`."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._processes: dict[str, float] = {}
        self._machine = (0.0, 0.0)
        self._started = 0.0

    def _read(self) -> dict[str, float]:
        return {n: v for n, pid in self.pids.items() if (v := process_cpu_s(pid)) is not None}

    def start(self) -> None:
        self._processes = self._read()
        self._machine = machine_cpu_s()
        self._started = time.perf_counter()

    def stop(self) -> CpuUse:
        wall = time.perf_counter() - self._started
        now = self._read()
        busy, steal = machine_cpu_s()
        return CpuUse(
            processes_s={n: now[n] - self._processes[n] for n in now if n in self._processes},
            machine_busy_s=busy - self._machine[0],
            steal_s=steal - self._machine[1],
            wall_s=wall,
        )
