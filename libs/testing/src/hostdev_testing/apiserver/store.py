"""Objects, the global revision counter, the bounded event log and the watchers fed from it."""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from hostdev_testing.apiserver.errors import expired
from hostdev_testing.apiserver.resources import Obj

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Event:
    """One committed change; `prev` is the object before it (None for ADDED)."""

    revision: int
    resource: str
    type: str
    obj: Obj
    prev: Obj | None


@dataclass(eq=False, slots=True)
class Subscription:
    """A watcher's feed: the replayed history first, then live events; None means shutdown."""

    replay: list[Event]
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)


class Store:
    """A single-process etcd: one revision counter shared by every resource, like etcd's."""

    def __init__(self, history: int = 10_000) -> None:
        self._objects: dict[str, dict[Key, Obj]] = {}
        self._revision = 1
        self._compacted = 1
        self._log: deque[Event] = deque(maxlen=history)
        self._subscriptions: set[Subscription] = set()
        self._changed = asyncio.Event()
        self.closed = False

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def oldest_watchable(self) -> int:
        """The lowest resourceVersion a watch can resume from without a 410."""
        return self._compacted

    def get(self, resource: str, key: Key) -> Obj | None:
        return self._objects.get(resource, {}).get(key)

    def items(self, resource: str, namespace: str | None = None) -> Iterator[Obj]:
        """Objects in key order, as etcd returns a range."""
        bucket = self._objects.get(resource, {})
        for key in sorted(bucket):
            if namespace is None or key[0] == namespace:
                yield bucket[key]

    def put(self, resource: str, obj: Obj) -> Obj:
        """Store `obj` at a new revision and announce it as ADDED or MODIFIED."""
        key = key_of(obj)
        prev = self._objects.get(resource, {}).get(key)
        self._revision += 1
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self._revision)
        self._objects.setdefault(resource, {})[key] = stored
        self._emit(
            Event(self._revision, resource, "ADDED" if prev is None else "MODIFIED", stored, prev)
        )
        return copy.deepcopy(stored)

    def remove(self, resource: str, key: Key) -> Obj:
        """Delete at a new revision; the DELETED event carries that revision, as etcd's does."""
        prev = self._objects[resource].pop(key)
        self._revision += 1
        gone = copy.deepcopy(prev)
        gone["metadata"]["resourceVersion"] = str(self._revision)
        self._emit(Event(self._revision, resource, "DELETED", gone, prev))
        return copy.deepcopy(prev)

    def _emit(self, event: Event) -> None:
        if len(self._log) == self._log.maxlen:
            self._compacted = self._log[0].revision
        self._log.append(event)
        for subscription in self._subscriptions:
            subscription.queue.put_nowait(event)
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self) -> None:
        """Return after the next commit."""
        await self._changed.wait()

    def subscribe(self, resource: str, since: int | None) -> Subscription:
        """Events of `resource` after revision `since` (None: only live ones); 410 if compacted."""
        replay: list[Event] = []
        if since is not None:
            if since < self._compacted:
                raise expired(f"too old resource version: {since} ({self._compacted})")
            replay = [e for e in self._log if e.revision > since and e.resource == resource]
        subscription = Subscription(replay)
        if self.closed:
            subscription.queue.put_nowait(None)
        else:
            self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def close(self) -> None:
        """End every watch for good: each subscriber gets the shutdown marker."""
        self.closed = True
        self.end_watches()

    def end_watches(self) -> None:
        """End the current watches (as a server going away does); later ones are served."""
        for subscription in self._subscriptions:
            subscription.queue.put_nowait(None)
        self._subscriptions.clear()


def key_of(obj: Obj) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]
