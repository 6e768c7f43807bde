"""A command's subject takes a Batch of its requests: each item is answered as it would be
alone, in one BatchReply; a batch that cannot be answered so is refused as a whole."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import msgspec
import pytest
from hypothesis import strategies as st
from nats.aio.client import Client as NatsClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hostdev_bus import codec, tracing
from hostdev_events.base import ErrorCode, ErrorReply
from hostdev_events.batch import MAX_ITEMS, Batch, BatchItem, BatchReply
from hostdev_runtime import runner, telemetry
from hostdev_runtime.runner import Route
from hostdev_testing import fuzz
from hostdev_testing.responder import Echo, Echoer, serving

_REPLIES = msgspec.json.Decoder(BatchReply | ErrorReply)


def _node() -> str:
    return f"batch-{uuid.uuid4().hex[:8]}"


def _batch(*items: bytes) -> bytes:
    return codec.encode(Batch(items=tuple(BatchItem(request=msgspec.Raw(i)) for i in items)))


async def _ask(nc: NatsClient, subject: str, payload: bytes) -> bytes:
    return (await nc.request(subject, payload, timeout=10)).data


async def test_each_item_of_a_batch_is_answered_as_it_would_be_alone(
    nats_url: str, nc: NatsClient
) -> None:
    """Valid requests, a typed failure, JSON of the wrong shape and another message's tag:
    one BatchReply whose entries, in order, are byte for byte the lone answers."""
    node, echoer = _node(), Echoer()
    subject = f"test.{node}.echo"
    items = [
        codec.encode(Echo(text="a")),
        codec.encode(Echo(text="b", fail=ErrorCode.CONFLICT)),
        b"[1,2]",
        b'{"type":"alloc.reserve.v1","owner":"x","devices":[]}',
        codec.encode(Echo(text="c", pad=10)),
    ]
    async with serving(nats_url, node, [Route(subject, Echo, echoer)]):
        batched = _REPLIES.decode(await _ask(nc, subject, _batch(*items)))
        alone = [await _ask(nc, subject, item) for item in items]
    assert isinstance(batched, BatchReply)
    assert [bytes(r) for r in batched.replies] == alone
    codes = [msgspec.json.decode(r, type=ErrorReply).code for r in alone if b'"error.v1"' in r]
    assert codes == [ErrorCode.CONFLICT, ErrorCode.MALFORMED, ErrorCode.MALFORMED]
    assert echoer.handled == ["a", "b", "c"] * 2


async def test_the_items_of_a_batch_are_handled_concurrently(nats_url: str, nc: NatsClient) -> None:
    """An item waiting on something does not hold the next one back: both are being
    handled at once, as two lone messages would be."""
    node, echoer = _node(), Echoer()
    subject = f"test.{node}.echo"
    items = [codec.encode(Echo(text=t, wait=True)) for t in ("a", "b")]
    async with serving(nats_url, node, [Route(subject, Echo, echoer)]):
        asked = asyncio.ensure_future(_ask(nc, subject, _batch(*items)))
        async with asyncio.timeout(10):
            while echoer.waiting < 2:
                echoer.arrived.clear()
                await echoer.arrived.wait()
        echoer.gate.set()
        reply = _REPLIES.decode(await asked)
    assert isinstance(reply, BatchReply)
    assert len(reply.replies) == 2


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (_batch(codec.encode(Echo(text="a")), _batch(codec.encode(Echo(text="b")))), "inside"),
        (_batch(*[codec.encode(Echo(text="a"))] * (MAX_ITEMS + 1)), f"at most {MAX_ITEMS}"),
    ],
    ids=["batch-in-a-batch", "too-many-items"],
)
async def test_a_batch_that_holds_a_batch_or_too_many_items_is_refused_as_a_whole(
    nats_url: str, nc: NatsClient, payload: bytes, detail: str
) -> None:
    """One INVALID error for the message, and none of its items handled."""
    node, echoer = _node(), Echoer()
    subject = f"test.{node}.echo"
    async with serving(nats_url, node, [Route(subject, Echo, echoer)]):
        reply = _REPLIES.decode(await _ask(nc, subject, payload))
    assert isinstance(reply, ErrorReply)
    assert reply.code == ErrorCode.INVALID
    assert detail in reply.detail
    assert echoer.handled == []


async def test_a_batch_reply_larger_than_max_payload_is_an_error_that_fits(
    nats_url: str, nc: NatsClient
) -> None:
    """Three answers of 400 kB each fit alone but not together: the batch gets one INVALID
    error (its requester then sends the items alone) where NATS would drop the reply."""
    node, echoer = _node(), Echoer()
    subject = f"test.{node}.echo"
    items = [codec.encode(Echo(text=str(i), pad=400_000)) for i in range(3)]
    async with serving(nats_url, node, [Route(subject, Echo, echoer)]):
        reply = _REPLIES.decode(await _ask(nc, subject, _batch(*items)))
    assert isinstance(reply, ErrorReply)
    assert reply.code == ErrorCode.INVALID
    assert "max_payload" in reply.detail
    assert len(reply.detail) < 1000


async def test_each_item_is_a_span_in_its_own_callers_trace(
    nats_url: str, nc: NatsClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Items of different callers' traces: each is processed under its caller's span, with
    the batch's size as an attribute, and no span of the batch joins their traces."""
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    tracer = provider.get_tracer("test")
    monkeypatch.setattr(runner, "tracer", provider.get_tracer("hostdev_runtime"))
    node, echoer = _node(), Echoer()
    subject = f"test.{node}.echo"
    callers, items = [], []
    for text in ("a", "b", "c"):
        with tracer.start_as_current_span(f"caller {text}") as caller:
            callers.append(caller.get_span_context())
            request = msgspec.Raw(codec.encode(Echo(text=text)))
            items.append(BatchItem(request=request, trace=tracing.inject()))
    async with serving(nats_url, node, [Route(subject, Echo, echoer)]):
        await _ask(nc, subject, codec.encode(Batch(items=tuple(items))))
    processed = [s for s in exported.get_finished_spans() if s.name == "process Echo"]
    assert len(processed) == 3
    for span in processed:
        assert span.parent is not None
        assert span.attributes is not None
        assert span.attributes[telemetry.ATTR_MESSAGING_BATCH] == 3
    assert {(s.context.trace_id, s.parent.span_id) for s in processed if s.parent} == {
        (c.trace_id, c.span_id) for c in callers
    }


def _item_values() -> st.SearchStrategy[Any]:
    """What a requester may put in an item: valid requests, JSON of any shape, Echo with a
    field dropped or retyped, other messages (not batches: refused as a whole, above)."""
    echo = st.builds(
        Echo,
        text=fuzz.texts(),
        fail=st.none() | st.sampled_from(list(ErrorCode)),
    ).map(msgspec.to_builtins)
    others = st.sampled_from([m for m in fuzz.MESSAGES if m is not Batch]).flatmap(fuzz.shaped)
    return st.one_of(echo, fuzz.json_values(), fuzz.shaped(Echo), others).filter(
        lambda v: not (isinstance(v, dict) and v.get("type") == "batch.v1")
    )


async def test_any_mix_of_valid_and_malformed_items_gets_one_entry_per_item(
    nats_url: str, nc: NatsClient
) -> None:
    """Property: a Batch of any JSON items is answered with one BatchReply of one entry per
    item, each what the item gets alone (MALFORMED for one that is no Echo); or, when those
    answers together outgrow max_payload, with one INVALID error. A Batch with an item that
    is no JSON (a lone surrogate escaped, which msgspec refuses) is itself MALFORMED. The
    service keeps serving."""
    node, echoer = _node(), Echoer()
    echoer.gate.set()
    subject = f"test.{node}.echo"

    async def check(values: list[Any]) -> None:
        # json.dumps, as a requester in another language might: lone surrogates escaped.
        items = [fuzz.encode(v) for v in values]
        alone = [await _ask(nc, subject, item) for item in items]
        reply = _REPLIES.decode(await _ask(nc, subject, _batch(*items)))
        if not all(map(_is_json, items)):
            # msgspec reads an item's JSON to find its end: the Batch is not JSON to it.
            assert isinstance(reply, ErrorReply)
            assert reply.code == ErrorCode.MALFORMED
            return
        if isinstance(reply, ErrorReply):
            assert reply.code == ErrorCode.INVALID, reply
            assert sum(len(a) for a in alone) > nc.max_payload - 1024
            return
        assert [bytes(r) for r in reply.replies] == alone
        for item, entry in zip(items, alone, strict=True):
            if not _is_echo(item):
                assert msgspec.json.decode(entry, type=ErrorReply).code == ErrorCode.MALFORMED

    async with serving(nats_url, node, [Route(subject, Echo, echoer)]):
        await fuzz.run_async("batch items", st.lists(_item_values(), max_size=6), check, limit=60)
        last = _REPLIES.decode(await _ask(nc, subject, _batch(codec.encode(Echo(text="x")))))
        assert isinstance(last, BatchReply)


def _is_json(item: bytes) -> bool:
    try:
        msgspec.json.decode(item)
    except msgspec.DecodeError:
        return False
    return True


def _is_echo(item: bytes) -> bool:
    try:
        msgspec.json.decode(item, type=Echo)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return False
    return True
