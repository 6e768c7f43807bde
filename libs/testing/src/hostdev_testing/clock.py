"""A clock a test moves by hand, for services whose waits are minutes long (grace periods)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass(eq=False, slots=True)
class _Sleeper:
    due: float
    woken: asyncio.Future[None]


@dataclass(slots=True)
class ManualClock:
    """hostdev_runtime.clock.Clock whose time passes only in `advance`.

    A task that sleeps on it is woken when the clock is advanced to its due time.
    `sleepers(n)` returns once n tasks are asleep on the clock: the service has finished
    what the last advance woke it for and waits for more time to pass.
    """

    wall: float = 1_900_000_000.0
    mono: float = 1_000.0
    _sleeping: list[_Sleeper] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def now(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        sleeper = _Sleeper(
            self.mono + max(0.0, seconds), asyncio.get_running_loop().create_future()
        )
        if sleeper.due <= self.mono:
            await asyncio.sleep(0)  # nothing to wait for, but let others run as a sleep would
            return
        self._sleeping.append(sleeper)
        self._notify()
        try:
            await sleeper.woken
        finally:
            if sleeper in self._sleeping:
                self._sleeping.remove(sleeper)
                self._notify()

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper now due."""
        self.mono += seconds
        self.wall += seconds
        for sleeper in [s for s in self._sleeping if s.due <= self.mono]:
            self._sleeping.remove(sleeper)
            if not sleeper.woken.done():
                sleeper.woken.set_result(None)
        self._notify()

    async def sleepers(self, count: int = 1) -> None:
        """Return once at least `count` tasks are asleep on this clock."""
        while len(self._sleeping) < count:
            self._changed.clear()
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
