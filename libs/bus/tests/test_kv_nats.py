"""NatsKv on a real nats-server: compare-and-set, prefixes, typed values."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from hostdev_bus import (
    KeyExists,
    KvWrite,
    MemoryKv,
    NatsBus,
    NatsKv,
    RemoteError,
    RequestTimeout,
    Unavailable,
    WrongRevision,
    write_all,
)
from hostdev_bus import kv as kv_module
from hostdev_events.alloc import Hold, Reserved, ReserveDevices
from hostdev_testing.nats_topology import eventually


async def _kv(nc: Client) -> NatsKv[Hold]:
    return await NatsKv.open(nc.jetstream(), f"test-{uuid.uuid4().hex[:8]}", Hold)


async def test_create_twice_is_refused(nc: Client) -> None:
    """create() on a key with a value raises KeyExists instead of overwriting."""
    kv = await _kv(nc)
    await kv.create("n.a", Hold(holders=("x",)))
    with pytest.raises(KeyExists):
        await kv.create("n.a", Hold(holders=("y",)))


async def test_update_with_stale_revision_is_refused(nc: Client) -> None:
    """A write naming an older revision loses; the value stays the newer one."""
    kv = await _kv(nc)
    first = await kv.create("n.a", Hold(holders=("x",)))
    await kv.update("n.a", Hold(holders=("y",)), last=first)
    with pytest.raises(WrongRevision):
        await kv.update("n.a", Hold(holders=("z",)), last=first)
    found = await kv.get("n.a")
    assert found is not None
    assert found[0].holders == ("y",)


async def test_delete_then_create_again_works(nc: Client) -> None:
    """A deleted key reads as missing and can be created again."""
    kv = await _kv(nc)
    revision = await kv.create("n.a", Hold(holders=("x",)))
    await kv.delete("n.a", last=revision)
    assert await kv.get("n.a") is None
    await kv.create("n.a", Hold(holders=("y",)))


async def test_keys_are_listed_by_prefix_only(nc: Client) -> None:
    """keys(prefix) returns the keys of one node, not those of another node."""
    kv = await _kv(nc)
    for key in ("n1.a", "n1.b", "n2.a", "n10.a"):
        await kv.create(key, Hold(holders=("x",)))
    await kv.delete("n1.b")
    assert await kv.keys("n1.") == ["n1.a"]
    assert await kv.keys("n3.") == []


async def test_request_without_responder_is_unavailable(nc: Client) -> None:
    """Nobody on the subject: a typed Unavailable error at once, not a timeout."""
    bus = NatsBus(nc)
    with pytest.raises(Unavailable):
        await bus.request(
            "hostdev.v1.nobody.alloc.reserve", ReserveDevices(owner="o", devices=()), Reserved, 2
        )


async def test_error_reply_becomes_remote_error(nc: Client) -> None:
    """An ErrorReply answer raises RemoteError with its code and detail."""

    async def answer(msg: Msg) -> None:
        await msg.respond(b'{"type":"error.v1","code":"conflict","detail":"held"}')

    subject = f"test.{uuid.uuid4().hex}"
    await nc.subscribe(subject, cb=answer)
    with pytest.raises(RemoteError) as failed:
        await NatsBus(nc).request(subject, ReserveDevices(owner="o", devices=()), Reserved, 2)
    assert (failed.value.code, failed.value.detail) == ("conflict", "held")


async def test_keys_asked_of_the_stream_match_the_watch(nc: Client) -> None:
    """The check behind an empty watch answer lists the same keys: deleted ones are not
    keys, and the prefix is honoured."""
    kv = await _kv(nc)
    for key in ("n1.a", "n1.b", "n2.a", "n10.a"):
        await kv.create(key, Hold(holders=("x",)))
    await kv.delete("n1.b")
    assert sorted(await kv._keys_from_stream("n1.")) == ["n1.a"]
    assert sorted(await kv._keys_from_stream("")) == sorted(await kv.keys())
    assert await kv._keys_from_stream("n3.") == []


async def test_a_jetstream_that_does_not_answer_or_refuses_gives_typed_bus_errors(
    nc: Client,
) -> None:
    """A JetStream API that never answers (a loaded server, a stream without a leader) is a
    RequestTimeout, and one nobody serves is Unavailable, for reads and key listings (writes
    go to the stream's subjects, not through the API): nats-py's own TimeoutError escaped
    and the preparer answered thousands of claims 'internal error'."""
    bound = await _kv(nc)
    real: Any = bound._kv  # the stream and subject prefix nats-py keeps private
    await nc.subscribe("$JS.silent.API.>", cb=_never_answer)
    await nc.flush()
    for domain, expected in (("silent", RequestTimeout), ("nobody", Unavailable)):
        js = nc.jetstream(domain=domain, timeout=0.2)
        elsewhere = NatsKv(KeyValue(real._name, real._stream, real._pre, js, False), Hold)
        with pytest.raises(expected):
            await elsewhere.get("k")
        with pytest.raises(expected):
            await elsewhere.keys("k")


async def _never_answer(msg: Msg) -> None:
    """A JetStream API that takes requests and answers none."""


async def test_key_listings_leave_no_consumer_behind_for_long(nc: Client) -> None:
    """Each listing watches through a consumer of its own; once it is done the server drops
    it within seconds, where idle consumers stayed five minutes and a burst of listings
    exhausted JetStream's consumer limit."""
    kv = await _kv(nc)
    await kv.create("p.k1", Hold())
    real: Any = kv._kv  # the stream nats-py keeps private
    js = nc.jetstream()
    baseline = (await js.stream_info(real._stream)).state.consumer_count
    for _ in range(20):
        assert await kv.keys("p.") == ["p.k1"]

    async def back_to_baseline() -> bool:
        return (await js.stream_info(real._stream)).state.consumer_count <= baseline

    await eventually("the listings' consumers dropped by the server", back_to_baseline, 15)


async def test_write_all_lands_every_write_and_returns_each_lost_one_in_its_place(
    nc: Client,
) -> None:
    """More writes than one pipelined window: each lands at the revision returned, a create
    of a key with a value and an update naming an old revision lose alone, and a key deleted
    before is created again as create() does."""
    kv = await _kv(nc)
    taken = await kv.create("n.taken", Hold(holders=("theirs",)))
    moved = await kv.create("n.moved", Hold(holders=("v1",)))
    await kv.update("n.moved", Hold(holders=("v2",)), last=moved)
    gone = await kv.create("n.gone", Hold(holders=("old",)))
    await kv.delete("n.gone", last=gone)
    fresh = [KvWrite(f"n.k{i:04d}", Hold(holders=(f"h{i}",))) for i in range(1200)]
    writes = [
        *fresh[:600],
        KvWrite("n.taken", Hold(holders=("ours",))),
        KvWrite("n.moved", Hold(holders=("ours",)), last=moved),
        KvWrite("n.gone", Hold(holders=("back",))),
        *fresh[600:],
    ]
    results = await write_all(kv, writes)
    assert len(results) == len(writes)
    assert isinstance(results[600], KeyExists)
    assert isinstance(results[601], WrongRevision)
    for write, result in zip(writes, results, strict=True):
        if write.key in ("n.taken", "n.moved"):
            continue
        assert await kv.get(write.key) == (write.value, result)
    assert await kv.get("n.taken") == (Hold(holders=("theirs",)), taken)
    assert (await kv.get("n.moved") or (None, 0))[0] == Hold(holders=("v2",))


async def test_write_all_in_memory_follows_the_same_rules() -> None:
    """MemoryKv, written one by one: revisions in order, a lost compare-and-set returned."""
    kv: MemoryKv[Hold] = MemoryKv()
    first = await kv.create("n.a", Hold(holders=("x",)))
    results = await write_all(
        kv,
        [
            KvWrite("n.a", Hold(holders=("y",))),
            KvWrite("n.a", Hold(holders=("z",)), last=first),
            KvWrite("n.b", Hold(holders=("b",))),
        ],
    )
    assert isinstance(results[0], KeyExists)
    assert await kv.get("n.a") == (Hold(holders=("z",)), results[1])
    assert await kv.get("n.b") == (Hold(holders=("b",)), results[2])


async def test_write_all_nobody_stores_or_answers_gives_typed_bus_errors(
    nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes to subjects no stream takes are Unavailable at once; writes that a server
    takes and never answers are a RequestTimeout after the deadline, not a hang."""
    monkeypatch.setattr(kv_module, "_JS_TIMEOUT", 0.3)
    bound = await _kv(nc)
    real: Any = bound._kv  # the stream and subject prefix nats-py keeps private
    await nc.subscribe("silent.kv.>", cb=_never_answer)
    await nc.flush()
    for prefix, expected in (("silent.kv.", RequestTimeout), ("nobody.kv.", Unavailable)):
        elsewhere = NatsKv(KeyValue(real._name, real._stream, prefix, real._js, False), Hold)
        with pytest.raises(expected):
            await write_all(elsewhere, [KvWrite(f"k{i}", Hold()) for i in range(700)])
