"""Typed JetStream KV with compare-and-set, and an in-memory twin for handler tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from hostdev_bus import codec
from hostdev_bus.acks import PubAck, PublishAcks
from hostdev_bus.errors import (
    KeyExists,
    KeyMissing,
    KvError,
    PayloadTooLarge,
    RequestTimeout,
    Unavailable,
    WrongRevision,
)
from hostdev_events import killpoints

T = TypeVar("T")

# JetStream answers a failed expected-last-sequence check with these API codes.
_WRONG_LAST_SEQUENCE = (10071, 10164)
# How long the server keeps a key listing's consumer once the listing is done. nats-py's
# default is five minutes: thousands of listings in a few minutes (dp.list, dp.reconcile)
# left thousands of idle consumers, and JetStream refused new ones ('maximum consumers
# limit reached'), so no key could be listed until they expired.
_LISTING_CONSUMER_SECONDS = 2.0
# How long nats-py waits for a JetStream API answer unless told otherwise.
_JS_TIMEOUT = 5.0
# Pipelined writes (`write_all`) in flight at most: when this many are sent, the answers to
# the oldest half are awaited before more go out, so nats-server stores some while this
# process encodes the next. Small enough that a half's answers come well within _JS_TIMEOUT
# and the client's pending buffer stays far below its limit; large enough that no write
# waits for the answer to the one before.
_WRITE_WINDOW = 512
_EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"


@dataclass(frozen=True, slots=True)
class KvWrite(Generic[T]):
    """One compare-and-set write of `write_all`: `last` is the revision read, 0 creates."""

    key: str
    value: T
    last: int = 0


@contextlib.contextmanager
def _typed(key: str) -> Iterator[None]:
    """JetStream's own failures as bus errors, so a caller answers a typed error rather than
    an unexpected exception: no answer in time (a loaded server or a stream without a leader
    for now) is a timeout; a refusal (a limit reached, no responder) is unavailable. The
    outcomes a call expects (a lost compare-and-set, a missing key) are caught inside it."""
    try:
        yield
    except nats.errors.TimeoutError as err:
        raise RequestTimeout(f"KV {key}", _JS_TIMEOUT) from err
    except (nats.errors.NoRespondersError, nats.js.errors.APIError) as err:
        raise Unavailable(f"KV {key}", str(err) or type(err).__name__) from err


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
        self._acks: PublishAcks | None = None  # made by the first write_many

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
        with _typed(key):
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
        with _typed(key):
            data = codec.encode(value)
            try:
                revision = await self._kv.create(key, data)
            except nats.js.errors.KeyWrongLastSequenceError as err:
                raise KeyExists(key, "already has a value") from err
            except nats.errors.MaxPayloadError as err:
                raise PayloadTooLarge(key, len(data)) from err
            killpoints.reached(killpoints.KV_WRITE)
            return revision

    async def update(self, key: str, value: T, last: int) -> int:
        with _typed(key):
            data = codec.encode(value)
            try:
                revision = await self._kv.update(key, data, last=last)
            except nats.js.errors.KeyWrongLastSequenceError as err:
                raise WrongRevision(key, f"revision {last} is not the latest") from err
            except nats.errors.MaxPayloadError as err:  # a value grown past what NATS carries
                raise PayloadTooLarge(key, len(data)) from err
            killpoints.reached(killpoints.KV_WRITE)
            return revision

    async def delete(self, key: str, last: int | None = None) -> None:
        with _typed(key):
            try:
                await self._kv.delete(key, last=last)
            except nats.js.errors.APIError as err:
                if err.err_code in _WRONG_LAST_SEQUENCE:
                    raise WrongRevision(key, f"revision {last} is not the latest") from err
                raise
            killpoints.reached(killpoints.KV_WRITE)

    async def keys(self, prefix: str = "") -> list[str]:
        with _typed(f"{prefix}>"):
            # nats-py's keys() reads the whole bucket and filters by substring; a filtered
            # watch asks the server for just this prefix.
            watcher = await self._kv.watch(
                f"{prefix}>" if prefix else ">",
                ignore_deletes=True,
                meta_only=True,
                inactive_threshold=_LISTING_CONSUMER_SECONDS,
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

    async def write_many(self, writes: Sequence[KvWrite[T]]) -> list[int | KvError]:
        """`write_all` on JetStream: each write sent without waiting for the one before,
        the answers awaited a window at a time."""
        kv: Any = self._kv  # the connection and subject prefix are not public in nats-py
        if self._acks is None:
            self._acks = PublishAcks(kv._js._nc)
        acks = self._acks
        results: list[int | KvError] = []
        sent: list[tuple[KvWrite[T], asyncio.Future[PubAck]]] = []
        try:
            for write in writes:
                data = codec.encode(write.value)
                with _typed(write.key):
                    try:
                        future = await acks.publish(
                            f"{kv._pre}{write.key}", data, {_EXPECTED_LAST: str(write.last)}
                        )
                    except nats.errors.MaxPayloadError as err:
                        raise PayloadTooLarge(write.key, len(data)) from err
                sent.append((write, future))
                if len(sent) >= _WRITE_WINDOW:
                    half = _WRITE_WINDOW // 2
                    results += await _answers(sent[:half])
                    del sent[:half]
            results += await _answers(sent)
            sent = []
        finally:
            acks.forget([f for _, f in sent])  # after a failure nobody reads these answers
        for i, (write, result) in enumerate(zip(writes, results, strict=True)):
            if isinstance(result, KeyExists):
                # A key deleted before has a delete marker, which fails a pipelined create;
                # create() recreates such a key, and says KeyExists only for a real value.
                try:
                    results[i] = await self.create(write.key, write.value)
                except KeyExists as err:
                    results[i] = err
        return results

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


async def _answers(
    sent: Sequence[tuple[KvWrite[Any], asyncio.Future[PubAck]]],
) -> list[int | KvError]:
    """The revisions JetStream gave pipelined writes, a lost compare-and-set as its error;
    any other refusal raises Unavailable, no answer in time RequestTimeout."""
    if not sent:
        return []
    label = f"KV {sent[0][0].key} and {len(sent) - 1} more"
    try:
        acks = await asyncio.wait_for(asyncio.gather(*(f for _, f in sent)), _JS_TIMEOUT)
    except TimeoutError as err:
        raise RequestTimeout(label, _JS_TIMEOUT) from err
    results: list[int | KvError] = []
    for (write, _), ack in zip(sent, acks, strict=True):
        if ack.error is None:
            killpoints.reached(killpoints.KV_WRITE)
            results.append(ack.seq)
        elif ack.error.err_code not in _WRONG_LAST_SEQUENCE:
            raise Unavailable(f"KV {write.key}", ack.error.description or str(ack.error.code))
        elif write.last:
            results.append(WrongRevision(write.key, f"revision {write.last} is not the latest"))
        else:
            results.append(KeyExists(write.key, "already has a value"))
    return results


async def write_all(kv: KvStore[T], writes: Sequence[KvWrite[T]]) -> list[int | KvError]:
    """Many compare-and-set writes, each confirmed by the store before this returns.

    The result has one entry per write, in order: the new revision, or the KeyExists or
    WrongRevision that create() or update() would have raised for it (a key deleted before
    is created again), returned so the caller can settle that key alone while the others
    stand. Any other failure raises; writes sent before it may have landed, as when writing
    one at a time. JetStream gets them pipelined (10,000 inventory entries in a fraction of
    the time of one request each); any other store gets them one by one.
    """
    if isinstance(kv, NatsKv):
        return await kv.write_many(writes)
    results: list[int | KvError] = []
    for write in writes:
        try:
            if write.last:
                results.append(await kv.update(write.key, write.value, write.last))
            else:
                results.append(await kv.create(write.key, write.value))
        except (KeyExists, WrongRevision) as err:
            results.append(err)
    return results
