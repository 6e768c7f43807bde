"""PrefixInMemory: the prefix's values answered from memory, and never past a doubt."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from nats.aio.client import Client

from hostdev_bus import (
    KeyExists,
    MemoryKv,
    NatsKv,
    PrefixInMemory,
    RequestTimeout,
    WrongRevision,
)
from hostdev_events.alloc import Hold

PREFIX = "node-1."


class Counted(MemoryKv[Hold]):
    """The store, counting the reads that reach it; a write can be made to fail after it
    landed (an answer lost) or to wait for a signal."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.lose_answer = False
        self.hold_reads: asyncio.Event | None = None
        self.read_held = asyncio.Event()

    async def get(self, key: str) -> tuple[Hold, int] | None:
        self.reads += 1
        found = await super().get(key)
        if self.hold_reads is not None:
            self.read_held.set()
            await self.hold_reads.wait()
        return found

    async def update(self, key: str, value: Hold, last: int) -> int:
        revision = await super().update(key, value, last)
        if self.lose_answer:
            raise RequestTimeout(f"KV {key}", 5.0)
        return revision


async def _loaded(store: Counted) -> PrefixInMemory[Hold]:
    remembered = PrefixInMemory(store, PREFIX)
    await remembered.load()
    store.reads = 0
    return remembered


async def test_reads_under_the_prefix_are_answered_from_memory_after_load() -> None:
    """Loaded values and this process's own writes are read without asking the store; a key
    the prefix does not have is known to be absent."""
    store = Counted()
    await store.create(f"{PREFIX}a", Hold(holders=("x",)))
    remembered = await _loaded(store)
    found = await remembered.get(f"{PREFIX}a")
    assert found is not None
    assert found[0].holders == ("x",)
    revision = await remembered.create(f"{PREFIX}b", Hold(holders=("y",)))
    assert await remembered.get(f"{PREFIX}b") == (Hold(holders=("y",)), revision)
    assert await remembered.get(f"{PREFIX}never") is None
    await remembered.delete(f"{PREFIX}a")
    assert await remembered.get(f"{PREFIX}a") is None
    assert store.reads == 0


async def test_keys_outside_the_prefix_and_before_load_are_read_from_the_store() -> None:
    store = Counted()
    await store.create("other.a", Hold(holders=("x",)))
    remembered = PrefixInMemory(store, PREFIX)
    assert await remembered.get(f"{PREFIX}a") is None  # not loaded yet
    await remembered.load()
    store.reads = 0
    assert await remembered.get("other.a") is not None
    assert store.reads == 1


async def test_a_write_whose_answer_was_lost_is_read_from_the_store_next_time() -> None:
    """A timeout says nothing about whether the write landed: memory forgets the key and
    the next read asks the store, which has the truth."""
    store = Counted()
    first = await store.create(f"{PREFIX}a", Hold(holders=("x",)))
    remembered = await _loaded(store)
    store.lose_answer = True
    with pytest.raises(RequestTimeout):
        await remembered.update(f"{PREFIX}a", Hold(holders=("y",)), last=first)
    found = await remembered.get(f"{PREFIX}a")
    assert found is not None
    assert found[0].holders == ("y",)
    assert store.reads == 1
    assert await remembered.get(f"{PREFIX}a") == found  # settled again: from memory
    assert store.reads == 1


async def test_a_write_refused_because_another_writer_came_first_rereads_the_key() -> None:
    """Another writer's change is found out by the compare-and-set it makes fail; the key is
    read from the store again, and memory follows it from then on."""
    store = Counted()
    first = await store.create(f"{PREFIX}a", Hold(holders=("x",)))
    remembered = await _loaded(store)
    theirs = await store.update(f"{PREFIX}a", Hold(holders=("them",)), last=first)
    with pytest.raises(WrongRevision):
        await remembered.update(f"{PREFIX}a", Hold(holders=("us",)), last=first)
    assert await remembered.get(f"{PREFIX}a") == (Hold(holders=("them",)), theirs)
    await store.delete(f"{PREFIX}b")
    await store.create(f"{PREFIX}b", Hold(holders=("them",)))
    with pytest.raises(KeyExists):
        await remembered.create(f"{PREFIX}b", Hold(holders=("us",)))
    found = await remembered.get(f"{PREFIX}b")
    assert found is not None
    assert found[0].holders == ("them",)


async def test_a_read_from_the_store_that_a_write_overlapped_is_not_kept() -> None:
    """A read of a doubted key that started before a write finished may carry the value
    from before the write: memory keeps the write's value, not the read's."""
    store = Counted()
    first = await store.create(f"{PREFIX}a", Hold(holders=("x",)))
    remembered = await _loaded(store)
    store.lose_answer = True
    with pytest.raises(RequestTimeout):  # doubted now
        await remembered.update(f"{PREFIX}a", Hold(holders=("y",)), last=first)
    store.lose_answer = False
    release = store.hold_reads = asyncio.Event()
    reading = asyncio.create_task(remembered.get(f"{PREFIX}a"))
    await store.read_held.wait()  # the read has its value; the write comes after it
    store.hold_reads = None
    found = await MemoryKv.get(store, f"{PREFIX}a")
    assert found is not None
    latest = await remembered.update(f"{PREFIX}a", Hold(holders=("z",)), last=found[1])
    release.set()
    old = await reading
    assert old is not None
    assert old[0].holders == ("y",)
    assert await remembered.get(f"{PREFIX}a") == (Hold(holders=("z",)), latest)


async def test_load_reads_every_value_of_the_prefix_from_jetstream(nc: Client) -> None:
    """On a real bucket: what load finds is what the bucket holds under the prefix, deleted
    keys and other prefixes left out."""
    bucket = await NatsKv.open(nc.jetstream(), f"test-{uuid.uuid4().hex[:8]}", Hold)
    kept = await bucket.create(f"{PREFIX}kept", Hold(holders=("x",)))
    await bucket.create(f"{PREFIX}gone", Hold(holders=("y",)))
    await bucket.delete(f"{PREFIX}gone")
    await bucket.create("node-2.other", Hold(holders=("z",)))
    remembered = PrefixInMemory(bucket, PREFIX)
    await remembered.load()
    assert await remembered.get(f"{PREFIX}kept") == (Hold(holders=("x",)), kept)
    assert await remembered.get(f"{PREFIX}gone") is None
    revision = await remembered.update(f"{PREFIX}kept", Hold(holders=("w",)), last=kept)
    assert await bucket.get(f"{PREFIX}kept") == (Hold(holders=("w",)), revision)
