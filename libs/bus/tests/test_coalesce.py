"""CoalescingBus on the real nats-server: concurrent requests to one subject travel as one
Batch, each caller gets what its request would have got alone, and a batch that fails as a
whole fails or falls back to lone requests as each request alone would have."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.subscription import Subscription

from hostdev_bus import (
    CoalesceLimits,
    CoalescingBus,
    NatsBus,
    RemoteError,
    RequestTimeout,
    Unavailable,
    codec,
)
from hostdev_events.base import ErrorCode, Message
from hostdev_events.batch import Batch
from hostdev_runtime.runner import Route
from hostdev_testing.clock import ManualClock
from hostdev_testing.responder import (
    Echo,
    Echoed,
    Echoer,
    answering_plain_only,
    serving,
    settled,
)

_SENT = msgspec.json.Decoder(Echo | Batch)


class Wire:
    """Every message on a subject, seen by a plain subscriber of its own connection."""

    def __init__(self, client: NatsClient, sub: Subscription) -> None:
        self._client = client
        self._sub = sub

    async def messages(self) -> list[Echo | Batch]:
        """What was sent so far: the requester had its answers, so the server passed every
        message on before it answers this connection's flush."""
        await self._client.flush()
        return [
            _SENT.decode((await self._sub.next_msg(timeout=5)).data)
            for _ in range(self._sub.pending_msgs)
        ]


@contextlib.asynccontextmanager
async def watching(nats_url: str, subject: str) -> AsyncIterator[Wire]:
    client = await nats.connect(nats_url)
    try:
        sub = await client.subscribe(subject)
        await settled(client)
        yield Wire(client, sub)
    finally:
        await client.close()


def _subject() -> tuple[str, str]:
    node = f"coalesce-{uuid.uuid4().hex[:8]}"
    return node, f"test.{node}.echo"


async def _until(condition: Callable[[], bool]) -> None:
    """Let the loop run until `condition` holds: a request waits from the first step of its
    task, and a handler runs once NATS delivers, so a few thousand turns are plenty."""
    async with asyncio.timeout(10):
        for _ in range(100_000):
            if condition():
                return
            await asyncio.sleep(0)
    raise AssertionError("the condition never held")


def _ask(bus: CoalescingBus, subject: str, message: Message, timeout: float = 10) -> Any:
    return asyncio.ensure_future(bus.request(subject, message, Echoed, timeout))


async def _behind_one_out(
    bus: CoalescingBus, echoer: Echoer, subject: str, messages: list[Echo]
) -> tuple[Any, list[Any]]:
    """One request out (its handler holds it until `echoer.gate` opens), then `messages`
    asked and seen waiting behind it."""
    first = _ask(bus, subject, Echo(text="first", wait=True))
    await _until(lambda: echoer.waiting == 1)
    rest = [_ask(bus, subject, m) for m in messages]
    await _until(lambda: bus.waiting(subject) == len(messages))
    return first, rest


async def _outcomes(tasks: list[asyncio.Future[Echoed]]) -> list[object]:
    """Each task's result, or its exception as (type, code or text)."""
    done = await asyncio.gather(*tasks, return_exceptions=True)
    return [_outcome(d) for d in done]


def _outcome(done: object) -> object:
    if isinstance(done, RemoteError):
        return (RemoteError, done.code, done.detail)
    if isinstance(done, BaseException):
        return type(done)
    return done


async def test_a_lone_request_goes_as_the_plain_message_it_always_was(
    nats_url: str, nc: NatsClient
) -> None:
    node, subject = _subject()
    bus = CoalescingBus(NatsBus(nc), [subject])
    async with (
        serving(nats_url, node, [Route(subject, Echo, Echoer())]),
        watching(nats_url, subject) as wire,
    ):
        assert await bus.request(subject, Echo(text="a"), Echoed, 10) == Echoed(text="a")
        assert await wire.messages() == [Echo(text="a")]


async def test_requests_that_come_while_one_is_out_go_as_one_batch_and_each_gets_its_answer(
    nats_url: str, nc: NatsClient
) -> None:
    """One request out (its handler waits); nine more, one of which the responder refuses:
    they travel as one Batch, in order, and each caller gets exactly what a lone request
    gets: its echo, or its RemoteError."""
    node, subject = _subject()
    echoer = Echoer()
    bus = CoalescingBus(NatsBus(nc), [subject])
    messages = [Echo(text=str(i), fail=ErrorCode.CONFLICT if i == 4 else None) for i in range(9)]
    async with (
        serving(nats_url, node, [Route(subject, Echo, echoer)]),
        watching(nats_url, subject) as wire,
    ):
        first, rest = await _behind_one_out(bus, echoer, subject, messages)
        echoer.gate.set()
        assert await first == Echoed(text="first")
        batched = await _outcomes(rest)
        sent = await wire.messages()
        alone = await _outcomes(
            [asyncio.ensure_future(NatsBus(nc).request(subject, m, Echoed, 10)) for m in messages]
        )
    assert batched == alone
    assert batched[4] == (RemoteError, ErrorCode.CONFLICT, "refused 4")
    assert batched[0] == Echoed(text="0")
    assert len(sent) == 2
    assert sent[0] == Echo(text="first", wait=True)
    assert isinstance(sent[1], Batch)
    assert [msgspec.json.decode(i.request, type=Echo) for i in sent[1].items] == messages


async def test_requests_started_in_one_turn_of_the_loop_go_at_once_as_one_batch(
    nats_url: str, nc: NatsClient
) -> None:
    """The claims of one call reach the same step together: with nothing out, what starts
    in one turn goes out at the end of it, as one Batch, without waiting for a reply."""
    node, subject = _subject()
    echoer = Echoer()
    bus = CoalescingBus(NatsBus(nc), [subject])
    async with (
        serving(nats_url, node, [Route(subject, Echo, echoer)]),
        watching(nats_url, subject) as wire,
    ):
        together = [_ask(bus, subject, Echo(text=t, wait=True)) for t in "abcde"]
        await _until(lambda: echoer.waiting == 5)  # all five handled at once
        echoer.gate.set()
        assert await _outcomes(together) == [Echoed(text=t) for t in "abcde"]
        sent = await wire.messages()
    assert len(sent) == 1
    assert isinstance(sent[0], Batch)
    assert len(sent[0].items) == 5


async def test_the_first_of_a_turn_cancelled_before_it_sends_leaves_the_others_their_request(
    nats_url: str, nc: NatsClient
) -> None:
    node, subject = _subject()
    echoer = Echoer()
    bus = CoalescingBus(NatsBus(nc), [subject])
    async with (
        serving(nats_url, node, [Route(subject, Echo, echoer)]),
        watching(nats_url, subject) as wire,
    ):
        a, b, c = (_ask(bus, subject, Echo(text=t)) for t in "abc")
        await asyncio.sleep(0)  # a opened the turn, b and c joined it; none has gone yet
        a.cancel()
        assert await _outcomes([a, b, c]) == [
            asyncio.CancelledError,
            Echoed(text="b"),
            Echoed(text="c"),
        ]
        sent = await wire.messages()
    assert echoer.handled == ["b", "c"]
    assert len(sent) == 1
    assert isinstance(sent[0], Batch)


async def test_a_responder_that_predates_batches_gets_each_request_alone_after_refusing_it(
    nats_url: str, nc: NatsClient
) -> None:
    """A responder that decodes only Echo answers the Batch MALFORMED: each of its requests
    is sent again by itself and answered."""
    _, subject = _subject()
    echoer = Echoer()
    bus = CoalescingBus(NatsBus(nc), [subject])
    async with (
        answering_plain_only(nats_url, subject, echoer),
        watching(nats_url, subject) as wire,
    ):
        first, rest = await _behind_one_out(bus, echoer, subject, [Echo(text=t) for t in "abc"])
        echoer.gate.set()
        assert await first == Echoed(text="first")
        assert await _outcomes(rest) == [Echoed(text=t) for t in "abc"]
        sent = await wire.messages()
    assert [type(m) for m in sent] == [Echo, Batch, Echo, Echo, Echo]


async def test_a_batch_too_large_for_nats_is_sent_request_by_request(
    nats_url: str, nc: NatsClient
) -> None:
    """Three requests of 400 kB fit one by one, not together: the client refuses the
    batch before it leaves, and each request goes alone."""
    node, subject = _subject()
    echoer = Echoer()
    bus = CoalescingBus(NatsBus(nc), [subject], CoalesceLimits(max_bytes=4 << 20))
    big = [Echo(text=t * 400_000) for t in "abc"]
    async with (
        serving(nats_url, node, [Route(subject, Echo, echoer)]),
        watching(nats_url, subject) as wire,
    ):
        first, rest = await _behind_one_out(bus, echoer, subject, big)
        echoer.gate.set()
        await first
        assert await _outcomes(rest) == [Echoed(text=m.text) for m in big]
        sent = await wire.messages()
    assert [type(m) for m in sent] == [Echo] * 4


async def test_a_batch_whose_reply_outgrows_max_payload_is_sent_again_request_by_request(
    nats_url: str, nc: NatsClient
) -> None:
    """Three answers of 400 kB each: the responder refuses the batch with a typed error,
    and each request is answered alone."""
    node, subject = _subject()
    echoer = Echoer()
    bus = CoalescingBus(NatsBus(nc), [subject])
    async with (
        serving(nats_url, node, [Route(subject, Echo, echoer)]),
        watching(nats_url, subject) as wire,
    ):
        first, rest = await _behind_one_out(
            bus, echoer, subject, [Echo(text=t, pad=400_000) for t in "abc"]
        )
        echoer.gate.set()
        await first
        answers = await asyncio.gather(*rest)
        sent = await wire.messages()
    assert [(a.text, len(a.padding)) for a in answers] == [(t, 400_000) for t in "abc"]
    assert [type(m) for m in sent] == [Echo, Batch, Echo, Echo, Echo]


async def test_waiting_requests_go_after_the_hold_when_the_one_out_is_slow_and_time_out_together(
    nats_url: str, nc: NatsClient
) -> None:
    """The request out does not answer: after the hold the waiting ones go anyway, as one
    Batch whose deadline is the earliest of theirs. Unanswered, every item fails with the
    timeout, the later deadline too."""
    node, subject = _subject()
    echoer, clock = Echoer(), ManualClock()
    bus = CoalescingBus(NatsBus(nc), [subject], sleep=clock.sleep)
    async with (
        serving(nats_url, node, [Route(subject, Echo, echoer)]),
        watching(nats_url, subject) as wire,
    ):
        first = _ask(bus, subject, Echo(text="first", wait=True))
        await _until(lambda: echoer.waiting == 1)
        short = _ask(bus, subject, Echo(text="a", wait=True), timeout=0.3)
        long = _ask(bus, subject, Echo(text="b", wait=True), timeout=30)
        await clock.sleepers(1)
        assert bus.waiting(subject) == 2
        clock.advance(CoalesceLimits().hold)
        async with asyncio.timeout(10):  # far less than the later deadline
            assert await _outcomes([short, long]) == [RequestTimeout, RequestTimeout]
        echoer.gate.set()
        await first
        sent = await wire.messages()
    assert [type(m) for m in sent] == [Echo, Batch]


async def test_a_batch_with_no_responder_fails_every_request_unavailable(
    nats_url: str, nc: NatsClient
) -> None:
    """The only responder leaves while its one request is out: the batch that follows finds
    nobody, and each of its requests fails as it would alone."""
    _, subject = _subject()
    responder = await nats.connect(nats_url)
    try:
        sub = await responder.subscribe(subject)
        await settled(responder)
        bus = CoalescingBus(NatsBus(nc), [subject])
        first = _ask(bus, subject, Echo(text="first"))
        msg = await sub.next_msg(timeout=10)
        await sub.unsubscribe()
        await settled(responder)  # the server knows: nobody answers the subject any more
        rest = [_ask(bus, subject, Echo(text=t)) for t in "ab"]
        await _until(lambda: bus.waiting(subject) == 2)
        await msg.respond(codec.encode(Echoed(text="first")))
        assert await first == Echoed(text="first")
        assert await _outcomes(rest) == [Unavailable, Unavailable]
    finally:
        await responder.close()


async def test_a_caller_cancelled_while_it_waits_is_left_out_of_the_batch(
    nats_url: str, nc: NatsClient
) -> None:
    node, subject = _subject()
    echoer = Echoer()
    bus = CoalescingBus(NatsBus(nc), [subject])
    async with (
        serving(nats_url, node, [Route(subject, Echo, echoer)]),
        watching(nats_url, subject) as wire,
    ):
        first = _ask(bus, subject, Echo(text="first", wait=True))
        await _until(lambda: echoer.waiting == 1)
        a, b, c = (_ask(bus, subject, Echo(text=t)) for t in "abc")
        await _until(lambda: bus.waiting(subject) == 3)
        b.cancel()
        await _until(lambda: bus.waiting(subject) == 2)
        echoer.gate.set()
        await first
        assert await _outcomes([a, b, c]) == [
            Echoed(text="a"),
            asyncio.CancelledError,
            Echoed(text="c"),
        ]
        sent = await wire.messages()
    assert echoer.handled == ["first", "a", "c"]
    assert isinstance(sent[1], Batch)
    assert len(sent[1].items) == 2


async def test_a_caller_cancelled_while_its_batch_is_out_leaves_the_others_their_answers(
    nats_url: str, nc: NatsClient
) -> None:
    node, subject = _subject()
    echoer, clock = Echoer(), ManualClock()
    bus = CoalescingBus(NatsBus(nc), [subject], sleep=clock.sleep)
    async with serving(nats_url, node, [Route(subject, Echo, echoer)]):
        first = _ask(bus, subject, Echo(text="first", wait=True))
        await _until(lambda: echoer.waiting == 1)
        a, b, c = (_ask(bus, subject, Echo(text=t, wait=True)) for t in "abc")
        await clock.sleepers(1)
        clock.advance(CoalesceLimits().hold)  # the batch goes while the first is still out
        await _until(lambda: echoer.waiting == 4)
        b.cancel()
        echoer.gate.set()
        assert await _outcomes([first, a, b, c]) == [
            Echoed(text="first"),
            Echoed(text="a"),
            asyncio.CancelledError,
            Echoed(text="c"),
        ]
    assert sorted(echoer.handled) == ["a", "b", "c", "first"]


async def test_when_the_request_out_is_cancelled_the_waiting_ones_still_go(
    nats_url: str, nc: NatsClient
) -> None:
    node, subject = _subject()
    echoer = Echoer()
    bus = CoalescingBus(NatsBus(nc), [subject])
    async with serving(nats_url, node, [Route(subject, Echo, echoer)]):
        first, rest = await _behind_one_out(bus, echoer, subject, [Echo(text=t) for t in "ab"])
        first.cancel()
        assert await _outcomes(rest) == [Echoed(text="a"), Echoed(text="b")]
        echoer.gate.set()
        assert await _outcomes([first]) == [asyncio.CancelledError]


async def test_requests_to_other_subjects_go_straight_through(
    nats_url: str, nc: NatsClient
) -> None:
    """A subject not given to the bus is never held back: two requests at once are two
    plain messages, the second sent while the first is out."""
    node, subject = _subject()
    echoer = Echoer()
    bus = CoalescingBus(NatsBus(nc), [f"{subject}.other"])
    async with (
        serving(nats_url, node, [Route(subject, Echo, echoer)]),
        watching(nats_url, subject) as wire,
    ):
        first = _ask(bus, subject, Echo(text="first", wait=True))
        second = _ask(bus, subject, Echo(text="second", wait=True))
        await _until(lambda: echoer.waiting == 2)
        echoer.gate.set()
        assert await _outcomes([first, second]) == [
            Echoed(text="first"),
            Echoed(text="second"),
        ]
        assert [type(m) for m in await wire.messages()] == [Echo, Echo]


@pytest.mark.parametrize("limits", [{"max_items": 0}, {"max_items": 257}, {"in_flight": 0}])
def test_limits_out_of_range_are_refused(limits: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be"):
        CoalesceLimits(**limits)
