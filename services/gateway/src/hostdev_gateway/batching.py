"""Concurrent kubelet calls of one kind coalesced into one request to the preparer.

Every NATS message costs each end a loopback send and a wake-up, whatever it carries, and
the preparer already handles the claims of one request concurrently. So a call that finds
fewer than `in_flight` requests out is sent at once, from its own task, exactly as without
batching; calls that arrive while that many are out wait, and go together as one request
when one is answered. A request that takes long (a slow claim) holds the waiting calls back
for at most `hold` seconds: then they go anyway, so one slow claim never stalls the node's
other pods.

Each call receives its own claims' outcomes. A batch's deadline is the earliest of its
calls'. When the batch request fails as a whole, each call is answered as it would have
been alone: a timeout or an unreachable preparer fails every call of the batch with that
error; a refusal of the message itself (too large for NATS, an error reply) may come from
one call's claims, so each call is then sent again by itself.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from opentelemetry import trace

from hostdev_bus import RemoteError
from hostdev_events.claims import ClaimRef
from hostdev_gateway.errors import DriverUnavailable, TooManyClaims
from hostdev_runtime.clock import Clock

# One claim's outcome: ClaimOutcome for prepare, error text for unprepare.
Outcome = TypeVar("Outcome")

# send(claims, seconds left of the kubelet's deadline) -> outcome per claim UID; raises
# DriverUnavailable or TooManyClaims as a call alone would.
Send = Callable[[tuple[ClaimRef, ...], float], Awaitable[Mapping[str, Outcome]]]

tracer = trace.get_tracer("hostdev_gateway")

# The JSON of one ClaimRef is its three strings and 36 bytes of keys and punctuation; a
# character takes at most 6 bytes (\uXXXX), so this bound is never below the real size.
_REF_OVERHEAD = 40
_CHAR_BYTES = 6


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """How large a batch may grow, how many requests go out before calls wait, and how long
    a slow request holds the waiting calls back.

    `max_bytes` keeps a batch well below NATS's max_payload (1 MiB by default); a batch the
    server still refuses is split into its calls.
    """

    max_claims: int = 64
    max_bytes: int = 256 * 1024
    hold: float = 0.05
    in_flight: int = 1


def ref_bytes(claim: ClaimRef) -> int:
    """An upper bound of the claim's size in the request."""
    return _REF_OVERHEAD + _CHAR_BYTES * (len(claim.namespace) + len(claim.name) + len(claim.uid))


@dataclass(eq=False, slots=True)
class _Call(Generic[Outcome]):
    claims: tuple[ClaimRef, ...]
    deadline: float  # when the kubelet stops waiting, on the event loop's clock
    size: int
    context: contextvars.Context  # the call's, for the request when it goes first
    span: trace.Span  # the call's span, linked from the batch's
    answer: asyncio.Future[Mapping[str, Outcome]]


@dataclass(eq=False, slots=True)
class _Batch(Generic[Outcome]):
    calls: list[_Call[Outcome]] = field(default_factory=list)
    refs: dict[str, ClaimRef] = field(default_factory=dict)
    claims: int = 0
    size: int = 0

    def takes(self, call: _Call[Outcome], limits: BatchLimits) -> bool:
        """Whether `call` fits; a UID named differently by another call keeps them apart
        (the preparer keeps one reference per UID, and each call must get its own)."""
        if not self.calls:
            return True
        if self.claims + len(call.claims) > limits.max_claims:
            return False
        if self.size + call.size > limits.max_bytes:
            return False
        return all(self.refs.get(c.uid, c) == c for c in call.claims)

    def add(self, call: _Call[Outcome]) -> None:
        self.calls.append(call)
        for claim in call.claims:
            self.refs.setdefault(claim.uid, claim)
        self.claims += len(call.claims)
        self.size += call.size


class Batcher(Generic[Outcome]):
    """Prepares, or unprepares, of one node: one request per batch of concurrent calls."""

    def __init__(self, send: Send[Outcome], limits: BatchLimits, clock: Clock) -> None:
        # Deadlines are the kubelet's, in real time (the loop's clock, as gRPC's); `clock`
        # times only the hold.
        self._send = send
        self._limits = limits
        self._clock = clock
        self._pending: list[_Batch[Outcome]] = []
        self._in_flight = 0
        self._hold: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        """How many calls wait behind a request that is out."""
        return sum(1 for b in self._pending for c in b.calls if not c.answer.done())

    async def submit(self, claims: tuple[ClaimRef, ...], remaining: float) -> Mapping[str, Outcome]:
        """The outcomes of the request that carried `claims` (a mapping that may hold other
        calls' claims too); raises what the request raised for this call."""
        if self._in_flight < self._limits.in_flight and not self._pending:
            # Nothing to wait for: this call goes now, in its own task (its trace, and
            # its cancellation when the kubelet gives up, as without batching).
            self._in_flight += 1
            try:
                return await self._send(claims, remaining)
            finally:
                self._done()
        loop = asyncio.get_running_loop()
        size = sum(ref_bytes(c) for c in claims)
        call: _Call[Outcome] = _Call(
            claims,
            loop.time() + remaining,
            size,
            contextvars.copy_context(),
            trace.get_current_span(),
            loop.create_future(),
        )
        if not self._pending or not self._pending[-1].takes(call, self._limits):
            self._pending.append(_Batch())
        self._pending[-1].add(call)
        if self._hold is None:
            self._hold = asyncio.create_task(self._flush_after_hold())
        return await call.answer

    def _done(self) -> None:
        self._in_flight -= 1
        if self._pending:
            self._flush()

    def _flush(self) -> None:
        """Send every waiting batch, each as one request."""
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None
        batches, self._pending = self._pending, []
        for batch in batches:
            live = [c for c in batch.calls if not c.answer.done()]  # the kubelet gave up
            if not live:
                continue
            self._in_flight += 1
            task = asyncio.create_task(self._run(live), context=live[0].context)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush_after_hold(self) -> None:
        await self._clock.sleep(self._limits.hold)
        self._hold = None
        self._flush()

    async def _run(self, calls: list[_Call[Outcome]]) -> None:
        try:
            if len(calls) == 1:
                await self._answer(calls[0])
            else:
                await self._run_batch(calls)
        finally:
            self._done()

    async def _run_batch(self, calls: list[_Call[Outcome]]) -> None:
        refs: dict[str, ClaimRef] = {}
        for call in calls:
            for claim in call.claims:
                refs.setdefault(claim.uid, claim)
        left = min(c.deadline for c in calls) - asyncio.get_running_loop().time()
        links = _links(calls)
        with tracer.start_as_current_span("claims batch", links=links):
            try:
                outcomes = await self._send(tuple(refs.values()), left)
            except (TooManyClaims, DriverUnavailable) as err:
                if isinstance(err, DriverUnavailable) and not isinstance(
                    err.__cause__, RemoteError
                ):
                    for call in calls:  # timeout or no preparer: the same for each alone
                        _settle(call, err)
                    return
                # The message was refused, maybe for one call's claims: each goes alone.
                await asyncio.gather(*(self._answer(c) for c in calls))
                return
            except BaseException as err:
                for call in calls:
                    _settle(call, err)
                raise
        for call in calls:
            if not call.answer.done():
                call.answer.set_result(outcomes)

    async def _answer(self, call: _Call[Outcome]) -> None:
        """Send one call by itself and answer it."""
        try:
            left = call.deadline - asyncio.get_running_loop().time()
            outcomes = await self._send(call.claims, left)
        except BaseException as err:
            _settle(call, err)
            if not isinstance(err, Exception):
                raise
            return
        if not call.answer.done():
            call.answer.set_result(outcomes)


def _settle(call: _Call[Outcome], err: BaseException) -> None:
    if call.answer.done():
        return
    if isinstance(err, asyncio.CancelledError):
        call.answer.cancel()
    else:
        call.answer.set_exception(err)


def _links(calls: list[_Call[Outcome]]) -> list[trace.Link]:
    """The batch span links each call's span, when traces are recorded."""
    return [trace.Link(c.span.get_span_context()) for c in calls if c.span.is_recording()]
