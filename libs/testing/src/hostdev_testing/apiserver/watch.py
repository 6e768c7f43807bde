"""Watch streams: replay from the event log, then live events, filtered like the watch cache."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from hostdev_testing.apiserver.errors import ApiError
from hostdev_testing.apiserver.registry import matches
from hostdev_testing.apiserver.resources import Obj, ResourceType
from hostdev_testing.apiserver.selectors import Selector
from hostdev_testing.apiserver.store import Event, Store


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchRequest:
    """A parsed watch: what to watch, where to start, and how long to keep going."""

    rt: ResourceType
    namespace: str | None
    fields: Selector
    since: int | None
    initial_events: bool
    bookmarks: bool
    timeout: float
    bookmark_interval: float


def _visible(req: WatchRequest, obj: Obj | None) -> bool:
    if obj is None:
        return False
    if req.namespace is not None and obj["metadata"].get("namespace") != req.namespace:
        return False
    return matches(req.rt, obj, req.fields)


def convert(req: WatchRequest, event: Event) -> Obj | None:
    """The event this watcher sees: objects entering or leaving its selection become ADDED/DELETED."""
    before = _visible(req, event.prev)
    after = event.type != "DELETED" and _visible(req, event.obj)
    if after:
        return {"type": "MODIFIED" if before else "ADDED", "object": event.obj}
    if not before:
        return None
    if event.type == "DELETED":
        return {"type": "DELETED", "object": event.obj}
    # Left the selection: the previous state, stamped with this event's revision.
    gone = copy.deepcopy(event.prev)
    assert gone is not None
    gone["metadata"]["resourceVersion"] = str(event.revision)
    return {"type": "DELETED", "object": gone}


def bookmark(rt: ResourceType, revision: int) -> Obj:
    meta: Obj = {"resourceVersion": str(revision)}
    return {
        "type": "BOOKMARK",
        "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta},
    }


def error_event(error: ApiError) -> Obj:
    return {"type": "ERROR", "object": error.status()}


async def stream(store: Store, req: WatchRequest) -> AsyncGenerator[Obj, None]:
    """Yield watch events until the timeout, the server's shutdown, or the caller stops."""
    try:
        subscription = store.subscribe(req.rt.plural, req.since)
    except ApiError as exc:
        yield error_event(exc)
        return
    # Subscribing and taking the snapshot happen without an await between them, so no
    # commit can fall in the gap.
    initial = []
    if req.initial_events:
        initial = [o for o in store.items(req.rt.plural, req.namespace) if _visible(req, o)]
    deadline = time.monotonic() + req.timeout
    try:
        for obj in initial:
            yield {"type": "ADDED", "object": copy.deepcopy(obj)}
        for event in subscription.replay:
            if (seen := convert(req, event)) is not None:
                yield seen
        async for seen in _live(store, req, subscription.queue, deadline):
            yield seen
    finally:
        store.unsubscribe(subscription)


async def _live(
    store: Store, req: WatchRequest, queue: asyncio.Queue[Event | None], deadline: float
) -> AsyncIterator[Obj]:
    next_bookmark = time.monotonic() + req.bookmark_interval
    while True:
        wake = min(deadline, next_bookmark) if req.bookmarks else deadline
        try:
            event = await asyncio.wait_for(queue.get(), max(0.0, wake - time.monotonic()))
        except TimeoutError:
            if time.monotonic() >= deadline:
                return
            # The queue is drained, so every change up to the current revision was sent.
            yield bookmark(req.rt, store.revision)
            next_bookmark = time.monotonic() + req.bookmark_interval
            continue
        if event is None:
            return
        if (seen := convert(req, event)) is not None:
            yield seen
