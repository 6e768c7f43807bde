"""Typed JetStream KV with compare-and-set, and an in-memory twin for handler tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Generic, Protocol, TypeVar

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from hostdev_bus import codec
from hostdev_bus.errors import KeyExists, KeyMissing, WrongRevision
from hostdev_events import killpoints

T = TypeVar("T")

# JetStream answers a failed expected-last-sequence check with these API codes.
_WRONG_LAST_SEQUENCE = (10071, 10164)


class KvStore(Protocol, Generic[T]):
    """One bucket of typed values. Every write after the first names the revision it read."""

    async def get(self, key: str) -> tuple[T, int] | None:
        """The value and its revision, or None when the key has no value."""
        ...

    async def create(self, key: str, value: T) -> int:
        """Write a new key; raises KeyExists when it has a value."""
        ...

    async def update(self, key: str, value: T, last: int) -> int:
        """Write when `last` is still the latest revision; raises WrongRevision otherwise."""
        ...

    async def delete(self, key: str, last: int | None = None) -> None:
        """Remove the value; with `last`, only if it is still the latest revision."""
        ...

    async def keys(self, prefix: str = "") -> list[str]:
        """Keys that have a value, optionally only those starting with `prefix`."""
        ...


class NatsKv(Generic[T]):
    """KvStore on a JetStream KV bucket; values are JSON-encoded Structs."""

    def __init__(self, kv: KeyValue, kind: type[T]) -> None:
        self._kv = kv
        self._decoder = codec.decoder(kind)

    @classmethod
    async def open(
        cls, js: JetStreamContext, bucket: str, kind: type[T], replicas: int = 1
    ) -> NatsKv[T]:
        """Bind to `bucket`, creating it (file storage, one revision kept, `replicas` copies
        on a JetStream cluster) when missing; an existing bucket keeps its replicas."""
        try:
            kv = await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket, history=1, storage=StorageType.FILE, replicas=replicas
                )
            )
        return cls(kv, kind)

    async def get(self, key: str) -> tuple[T, int] | None:
        try:
            entry = await self._kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            killpoints.reached(killpoints.KV_READ)
            return None
        killpoints.reached(killpoints.KV_READ)
        if entry.value is None:
            return None
        return self._decoder.decode(entry.value), entry.revision or 0

    async def create(self, key: str, value: T) -> int:
        try:
            revision = await self._kv.create(key, codec.encode(value))
        except nats.js.errors.KeyWrongLastSequenceError as err:
            raise KeyExists(key, "already has a value") from err
        killpoints.reached(killpoints.KV_WRITE)
        return revision

    async def update(self, key: str, value: T, last: int) -> int:
        try:
            revision = await self._kv.update(key, codec.encode(value), last=last)
        except nats.js.errors.KeyWrongLastSequenceError as err:
            raise WrongRevision(key, f"revision {last} is not the latest") from err
        killpoints.reached(killpoints.KV_WRITE)
        return revision

    async def delete(self, key: str, last: int | None = None) -> None:
        try:
            await self._kv.delete(key, last=last)
        except nats.js.errors.APIError as err:
            if err.err_code in _WRONG_LAST_SEQUENCE:
                raise WrongRevision(key, f"revision {last} is not the latest") from err
            raise
        killpoints.reached(killpoints.KV_WRITE)

    async def keys(self, prefix: str = "") -> list[str]:
        # nats-py's keys() reads the whole bucket and filters by substring; a filtered
        # watch asks the server for just this prefix.
        watcher = await self._kv.watch(
            f"{prefix}>" if prefix else ">", ignore_deletes=True, meta_only=True
        )
        found: list[str] = []
        try:
            async for entry in watcher:
                if entry is None:  # end of the current values
                    break
                found.append(entry.key)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        if not found:
            found = await self._keys_from_stream(prefix)
        killpoints.reached(killpoints.KV_READ)
        return sorted(found)

    async def _keys_from_stream(self, prefix: str) -> list[str]:
        """The keys under `prefix`, asked of the stream itself.

        nats-py's watch decides "no current values" from consumer info taken right after
        subscribing: when the server has already pushed every value but none has reached
        the callback yet, it reports none at all. An empty answer is therefore checked
        against the stream's subjects; a subject whose last message is a delete marker is
        not a key.
        """
        kv: Any = self._kv  # the stream and subject prefix are not public in nats-py
        info = await kv._js.stream_info(kv._stream, subjects_filter=f"{kv._pre}{prefix}>")
        found = []
        for subject in (info.state.subjects or {}) if info.state else {}:
            key = subject[len(kv._pre) :]
            if await self.get(key) is not None:
                found.append(key)
        return found

    async def watch(self, prefix: str = "") -> AsyncIterator[tuple[str, T | None] | None]:
        """Every key under `prefix` now, then None once, then each change as it happens.

        Items are (key, value), with value None for a deleted key.
        """
        watcher = await self._kv.watch(f"{prefix}>" if prefix else ">")
        try:
            async for entry in watcher:
                if entry is None:  # the current values have all been sent
                    yield None
                elif entry.operation in ("DEL", "PURGE") or not entry.value:
                    yield entry.key, None
                else:
                    yield entry.key, self._decoder.decode(entry.value)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]


class MemoryKv(Generic[T]):
    """KvStore in memory with the same revision rules as JetStream, for handler tests.

    Values are kept as given: the project stores frozen Structs, which cannot change.
    """

    def __init__(self) -> None:
        self._values: dict[str, tuple[T, int]] = {}
        self._revision = 0

    def _store(self, key: str, value: T) -> int:
        self._revision += 1
        self._values[key] = (value, self._revision)
        return self._revision

    async def get(self, key: str) -> tuple[T, int] | None:
        return self._values.get(key)

    async def create(self, key: str, value: T) -> int:
        if key in self._values:
            raise KeyExists(key, "already has a value")
        return self._store(key, value)

    async def update(self, key: str, value: T, last: int) -> int:
        found = self._values.get(key)
        if found is None:
            raise KeyMissing(key, "no value to update")
        if found[1] != last:
            raise WrongRevision(key, f"revision {last} is not the latest")
        return self._store(key, value)

    async def delete(self, key: str, last: int | None = None) -> None:
        found = self._values.get(key)
        if found is None:
            return
        if last is not None and found[1] != last:
            raise WrongRevision(key, f"revision {last} is not the latest")
        del self._values[key]

    async def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self._values if k.startswith(prefix))
