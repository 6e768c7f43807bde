"""The preparer's start-up read of its node's checkpoints waits for JetStream to answer."""

from __future__ import annotations

from hostdev_bus import MemoryKv, PrefixInMemory, RequestTimeout
from hostdev_events.state import Checkpoint
from hostdev_preparer.app import LOAD_RETRY_MAX_SECONDS, load_when_answered


class Slow(MemoryKv[Checkpoint]):
    """A bucket whose listings time out `failures` times first (JetStream not answering)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def keys(self, prefix: str = "") -> list[str]:
        if self.failures:
            self.failures -= 1
            raise RequestTimeout(f"KV {prefix}>", 5.0)
        return await super().keys(prefix)


class Waits:
    """A clock that records the sleeps asked of it and returns at once."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def now(self) -> float:
        return 0.0

    def monotonic(self) -> float:
        return sum(self.slept)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


async def test_start_waits_for_jetstream_and_then_serves_from_memory() -> None:
    """Listings that time out are asked again, waiting longer each time up to a cap, rather
    than ending the service; once one answers, memory holds the node's checkpoints."""
    store = Slow(failures=7)
    remembered = PrefixInMemory(store, "node-1.")
    clock = Waits()
    await load_when_answered(remembered, clock)
    assert remembered.loaded
    assert len(clock.slept) == 7
    assert clock.slept == sorted(clock.slept)
    assert clock.slept[-1] == LOAD_RETRY_MAX_SECONDS
