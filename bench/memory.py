"""Resident memory of processes, from /proc/<pid>/status."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path


def status_kib(pid: int, key: str) -> int | None:
    """A `Vm*` line of /proc/<pid>/status in KiB (VmRSS, VmHWM); None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def rss_mib(pid: int) -> float | None:
    """Current resident set size in MiB."""
    kib = status_kib(pid, "VmRSS")
    return None if kib is None else kib / 1024


def hwm_mib(pid: int) -> float | None:
    """Peak resident set size (high-water mark) in MiB."""
    kib = status_kib(pid, "VmHWM")
    return None if kib is None else kib / 1024


@dataclass(slots=True)
class PeakSampler:
    """Samples VmRSS of some processes every `interval` seconds and keeps each one's maximum."""

    pids: Mapping[str, int]
    interval: float = 0.25
    peaks: dict[str, float] = field(default_factory=dict)

    def sample(self) -> None:
        for name, pid in self.pids.items():
            rss = rss_mib(pid)
            if rss is not None and rss > self.peaks.get(name, 0.0):
                self.peaks[name] = rss

    async def _loop(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[PeakSampler]:
        """Sample in the background for the duration of the block."""
        task = asyncio.create_task(self._loop())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.sample()
