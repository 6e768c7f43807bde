"""A KV store for the one writer of a key prefix: the prefix's values kept in memory.

A node's preparer is the only process that writes its node's checkpoints (its DaemonSet
never runs two per node). Asking JetStream for a record before every prepare and unprepare
is then a round trip whose answer this process already knows: it loaded the prefix when it
started and made every change since. Reads under the prefix are answered from memory;
writes go to the store first and reach memory once the store has taken them.

Memory is never trusted past a doubt: a write whose outcome is unknown (a timeout, a lost
connection), or refused because the store holds something else (another writer after all),
leaves the key to be read from the store the next time, which puts memory right again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Generic, TypeVar

from hostdev_bus.kv import KvStore

T = TypeVar("T")

# Records read at once while loading: enough to hide the round trips, few enough not to
# crowd out a restarted node's other start-up work.
_LOAD_CONCURRENCY = 16


class PrefixInMemory(Generic[T]):
    """KvStore over `store`, answering reads of keys under `prefix` from memory once loaded.

    Only sound while this process is the prefix's only writer (see the module docstring);
    keys outside the prefix, and every key before `load`, are read from the store.
    """

    def __init__(self, store: KvStore[T], prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self._values: dict[str, tuple[T, int]] = {}
        self._doubted: set[str] = set()  # read these from the store next time
        self._loaded = False
        # Counts writes as they start and as they end: a read from the store that a write
        # overlapped may carry the value from before it, so only a read none overlapped
        # is kept.
        self._writes = 0

    @property
    def loaded(self) -> bool:
        return self._loaded

    async def load(self) -> None:
        """Read every key under the prefix; from now on memory answers for them."""
        limit = asyncio.Semaphore(_LOAD_CONCURRENCY)

        async def one(key: str) -> None:
            async with limit:
                found = await self.store.get(key)
            if found is not None:
                self._values[key] = found

        self._values.clear()
        self._doubted.clear()
        await asyncio.gather(*(one(k) for k in await self.store.keys(self.prefix)))
        self._loaded = True

    def _remembered(self, key: str) -> bool:
        return self._loaded and key.startswith(self.prefix) and key not in self._doubted

    def _doubt(self, key: str) -> None:
        if key.startswith(self.prefix):
            self._doubted.add(key)
            self._values.pop(key, None)

    def _settle(self, key: str, found: tuple[T, int] | None) -> None:
        if not key.startswith(self.prefix):
            return
        self._doubted.discard(key)
        if found is None:
            self._values.pop(key, None)
        else:
            self._values[key] = found

    async def get(self, key: str) -> tuple[T, int] | None:
        if self._remembered(key):
            return self._values.get(key)
        writes = self._writes
        found = await self.store.get(key)
        if self._loaded and writes == self._writes:
            self._settle(key, found)
        return found

    async def create(self, key: str, value: T) -> int:
        return await self._written(key, value, self.store.create(key, value))

    async def update(self, key: str, value: T, last: int) -> int:
        return await self._written(key, value, self.store.update(key, value, last))

    async def _written(self, key: str, value: T, write: Awaitable[int]) -> int:
        """Await the store's write of `value`; memory takes it once the store has."""
        self._writes += 1
        try:
            revision = await write
        except BaseException:
            self._doubt(key)
            raise
        finally:
            self._writes += 1
        self._settle(key, (value, revision))
        return revision

    async def delete(self, key: str, last: int | None = None) -> None:
        self._writes += 1
        try:
            await self.store.delete(key, last)
        except BaseException:
            self._doubt(key)
            raise
        finally:
            self._writes += 1
        self._settle(key, None)

    async def keys(self, prefix: str = "") -> list[str]:
        """Asked of the store: whoever lists keys (an orphan scan) wants the whole truth."""
        return await self.store.keys(prefix)
