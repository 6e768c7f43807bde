"""Concurrent requests to one subject sent as one message (hostdev_events.batch).

Every NATS message costs both ends a send, a wake-up and a dispatch. For the subjects it is
given, CoalescingBus sends a request that finds fewer than `in_flight` requests of its
subject out at the end of the event loop's current turn, together with the requests of that
subject started in the same turn (the claims of one call reach each step together): alone,
it goes from its caller's task exactly as the bus under it would send it (a lone request is
not wrapped); several go as one Batch. Requests that come while that many are out wait,
and go together when one is answered (or as a plain request when only one waits). A
request out for long holds the waiting ones back for at most `hold` seconds: then they go
anyway.

Each caller gets its own result, as if its request had gone alone: its item's reply, or
its RemoteError, MalformedReply. A batch's deadline is the earliest of its items'. When the
batch fails as a whole: a timeout or an unreachable responder fails every item with that
error; a refusal of the message itself (too large for NATS, an ErrorReply for the whole
batch, which is what a responder that predates batches answers, a reply that is no
BatchReply) sends each item again by itself. A caller that gives up (its task cancelled)
while its request waits takes it out; one that gives up while the batch is out leaves the
others their answers.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import msgspec

from hostdev_bus import codec, tracing
from hostdev_bus.client import Bus, decode_reply
from hostdev_bus.errors import (
    MalformedReply,
    PayloadTooLarge,
    RemoteError,
    RequestTimeout,
    Unavailable,
)
from hostdev_events.base import Message
from hostdev_events.batch import MAX_ITEMS, Batch, BatchItem, BatchReply

R = TypeVar("R", bound=Message)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CoalesceLimits:
    """How large a batch may grow (items, and bytes of their requests: well below NATS's
    max_payload of 1 MiB by default), how many requests of a subject go out before others
    wait, and how long a slow request holds the waiting ones back."""

    max_items: int = 64
    max_bytes: int = 256 * 1024
    hold: float = 0.05
    in_flight: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.max_items <= MAX_ITEMS:
            raise ValueError(f"max_items must be within 1..{MAX_ITEMS}: {self.max_items}")
        if self.in_flight < 1:
            raise ValueError(f"in_flight must be at least 1: {self.in_flight}")


@dataclass(eq=False, slots=True)
class _Waiting:
    message: Message
    payload: bytes  # encoded in the caller's task: a message that cannot be fails there
    reply: type[Message]
    timeout: float
    deadline: float  # on the event loop's clock
    context: contextvars.Context  # the caller's: its trace, for the request or its item
    answer: asyncio.Future[Any]

    def item(self) -> BatchItem:
        return BatchItem(request=msgspec.Raw(self.payload), trace=self.context.run(tracing.inject))


@dataclass(eq=False, slots=True)
class _Group:
    waiting: list[_Waiting] = field(default_factory=list)
    size: int = 0

    def takes(self, request: _Waiting, limits: CoalesceLimits) -> bool:
        if not self.waiting:
            return True
        return (
            len(self.waiting) < limits.max_items
            and self.size + len(request.payload) <= limits.max_bytes
        )

    def add(self, request: _Waiting) -> None:
        self.waiting.append(request)
        self.size += len(request.payload)


class _Lane:
    """The requests of one subject."""

    def __init__(self, subject: str, bus: Bus, limits: CoalesceLimits, sleep: Sleep) -> None:
        self.subject = subject
        self._bus = bus
        self._limits = limits
        self._sleep = sleep
        self._turn: _Group | None = None  # requests that go out at the end of this turn
        self._pending: list[_Group] = []  # requests waiting for one out to return
        self._in_flight = 0
        self._hold: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        return sum(1 for g in self._pending for w in g.waiting if not w.answer.done())

    def _waiting(self, message: Message, reply: type[Message], timeout: float) -> _Waiting:
        loop = asyncio.get_running_loop()
        return _Waiting(
            message,
            codec.encode(message),
            reply,
            timeout,
            loop.time() + timeout,
            contextvars.copy_context(),
            loop.create_future(),
        )

    async def request(self, message: Message, reply: type[R], timeout: float) -> R:
        turn = self._turn
        if turn is None and self._in_flight < self._limits.in_flight and not self._pending:
            return await self._first(message, reply, timeout)
        waiting = self._waiting(message, reply, timeout)
        if turn is not None and turn.takes(waiting, self._limits):
            turn.add(waiting)
        else:
            if not self._pending or not self._pending[-1].takes(waiting, self._limits):
                self._pending.append(_Group())
            self._pending[-1].add(waiting)
            if self._hold is None:
                self._hold = asyncio.create_task(self._flush_after_hold())
        # A cancelled caller cancels its future: the flush skips it, a batch out ignores it.
        return cast(R, await waiting.answer)

    async def _first(self, message: Message, reply: type[R], timeout: float) -> R:
        """Send at the end of this turn of the loop, with the requests started in the same
        turn (the claims of one call reach the same step together): alone, from the
        caller's task as the bus under this one would; several, as one Batch."""
        self._in_flight += 1
        mine = self._waiting(message, reply, timeout)
        turn = self._turn = _Group()
        turn.add(mine)
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            self._turn = None
            others = [w for w in turn.waiting[1:] if not w.answer.done()]
            if others:  # they go without this caller
                self._launch(others)
            self._done()
            raise
        self._turn = None
        if len(turn.waiting) == 1:
            try:
                return await self._bus.request(self.subject, message, reply, timeout)
            finally:
                self._done()
        # From a task of its own: this caller's cancellation must not cancel the others'.
        self._launch(turn.waiting)
        self._done()
        return cast(R, await mine.answer)

    def _done(self) -> None:
        self._in_flight -= 1
        if self._pending:
            self._flush()

    def _flush(self) -> None:
        """Send every waiting group, each as one message."""
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None
        groups, self._pending = self._pending, []
        for group in groups:
            self._launch(group.waiting)

    def _launch(self, group: list[_Waiting]) -> None:
        """Send one group as one message, leaving out requests whose callers gave up."""
        now = asyncio.get_running_loop().time()
        live = [w for w in group if not w.answer.done()]
        for w in live:
            if w.deadline <= now:  # its time ran out while it waited; not the others'
                _settle(w, RequestTimeout(self.subject, w.timeout))
        live = [w for w in live if not w.answer.done()]
        if not live:
            return
        self._in_flight += 1
        # One request goes in its caller's context (its trace headers); a batch in none:
        # each item carries its own.
        context = live[0].context if len(live) == 1 else contextvars.Context()
        task = asyncio.create_task(self._send(live), context=context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_after_hold(self) -> None:
        await self._sleep(self._limits.hold)
        self._hold = None
        self._flush()

    async def _send(self, waiting: list[_Waiting]) -> None:
        try:
            if len(waiting) == 1:
                await self._alone(waiting[0])
            else:
                await self._batch(waiting)
        finally:
            self._done()

    async def _batch(self, waiting: list[_Waiting]) -> None:
        left = min(w.deadline for w in waiting) - asyncio.get_running_loop().time()
        batch = Batch(items=tuple(w.item() for w in waiting))
        try:
            got = await self._bus.request(self.subject, batch, BatchReply, left)
        except (RequestTimeout, Unavailable) as err:
            for w in waiting:  # alone, each would have met the same
                _settle(w, err)
            return
        except (PayloadTooLarge, RemoteError, MalformedReply):
            await self._each_alone(waiting)  # the message was refused, maybe for one item
            return
        except BaseException as err:
            for w in waiting:
                _settle(w, err)
            if not isinstance(err, Exception):
                raise
            return
        if len(got.replies) != len(waiting):
            await self._each_alone(waiting)  # not an answer to this batch
            return
        for w, data in zip(waiting, got.replies, strict=True):
            if w.answer.done():
                continue
            try:
                w.answer.set_result(decode_reply(self.subject, bytes(data), w.reply))
            except (RemoteError, MalformedReply) as err:
                w.answer.set_exception(err)

    async def _each_alone(self, waiting: list[_Waiting]) -> None:
        await asyncio.gather(
            *(
                asyncio.create_task(self._alone(w), context=w.context)
                for w in waiting
                if not w.answer.done()
            )
        )

    async def _alone(self, waiting: _Waiting) -> None:
        """Send one request as itself and answer its caller."""
        try:
            left = waiting.deadline - asyncio.get_running_loop().time()
            result = await self._bus.request(self.subject, waiting.message, waiting.reply, left)
        except BaseException as err:
            _settle(waiting, err)
            if not isinstance(err, Exception):
                raise
            return
        if not waiting.answer.done():
            waiting.answer.set_result(result)


def _settle(waiting: _Waiting, err: BaseException) -> None:
    if waiting.answer.done():
        return
    if isinstance(err, asyncio.CancelledError):
        waiting.answer.cancel()
    else:
        waiting.answer.set_exception(err)


class CoalescingBus:
    """A Bus that sends concurrent requests to each of `subjects` as one message; other
    subjects, and publishing, go straight to `bus`. `sleep` times the hold (a test's
    clock); deadlines are the event loop's, as NATS's are."""

    def __init__(
        self,
        bus: Bus,
        subjects: Iterable[str],
        limits: CoalesceLimits | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._bus = bus
        chosen = limits or CoalesceLimits()
        self._lanes = {s: _Lane(s, bus, chosen, sleep) for s in subjects}

    def waiting(self, subject: str) -> int:
        """How many requests to `subject` wait behind one that is out."""
        lane = self._lanes.get(subject)
        return 0 if lane is None else lane.waiting

    async def request(self, subject: str, message: Message, reply: type[R], timeout: float) -> R:
        lane = self._lanes.get(subject)
        if lane is None:
            return await self._bus.request(subject, message, reply, timeout)
        return await lane.request(message, reply, timeout)

    async def publish(self, subject: str, message: Message) -> None:
        await self._bus.publish(subject, message)
