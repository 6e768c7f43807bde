"""Concurrent kubelet calls coalesced into one request to the preparer: real gRPC over a unix
socket to the gateway's DRA service, the real nats-server, and a preparer scripted on it that
answers as the preparer's handlers do (one outcome per claim UID of the request)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import msgspec
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hostdev_bus import NatsBus
from hostdev_events import subjects
from hostdev_events.base import ErrorCode, ErrorReply
from hostdev_events.claims import (
    ClaimOutcome,
    PrepareClaims,
    PrepareClaimsReply,
    PreparedDevice,
    UnprepareClaims,
    UnprepareClaimsReply,
)
from hostdev_gateway import dra
from hostdev_gateway.app import _batching
from hostdev_gateway.batching import BatchLimits
from hostdev_gateway.claims import ClaimCalls
from hostdev_gateway.feed import Feed
from hostdev_gateway.health import HealthService
from hostdev_gateway.settings import Settings
from hostdev_gateway.sockets import serve_unix, stop_unix
from hostdev_kubelet_pb.dra.v1 import api_pb2 as v1
from hostdev_runtime.settings import load_settings
from hostdev_testing.clock import ManualClock

CALL_TIMEOUT = 10.0
WAIT = 5.0  # the longest a test waits for something to happen
HOLD = 0.05
Request = PrepareClaims | UnprepareClaims
Answer = Callable[[str, Request], Awaitable[bytes | None]]  # None: never answered


def device_of(uid: str) -> str:
    return f"dev-{uid}"


async def answer_each_claim(subject: str, request: Request) -> bytes | None:
    """What the preparer answers when every claim succeeds: each its own device."""
    if isinstance(request, PrepareClaims):
        outcomes = {
            c.uid: ClaimOutcome(
                devices=(PreparedDevice(request_names=("r",), pool="p", device=device_of(c.uid)),)
            )
            for c in request.claims
        }
        return msgspec.json.encode(PrepareClaimsReply(outcomes=outcomes))
    return msgspec.json.encode(UnprepareClaimsReply(errors={c.uid: "" for c in request.claims}))


@dataclass
class ScriptedPreparer:
    """Subscribed to the node's claim subjects; records every request, answers with `answer`
    once `released` is set (all requests are answered at once when it is)."""

    nc: NatsClient
    node: str
    answer: Answer = answer_each_claim
    released: asyncio.Event = field(default_factory=asyncio.Event)
    requests: list[tuple[str, Request]] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def subscribe(self) -> None:
        self.subs = [
            await self.nc.subscribe(subjects.claims_prepare(self.node), cb=self._on_message),
            await self.nc.subscribe(subjects.claims_unprepare(self.node), cb=self._on_message),
        ]

    async def gone(self) -> None:
        """The preparer stops serving (its process died)."""
        for sub in self.subs:
            await sub.unsubscribe()
        await self.nc.flush()

    async def _on_message(self, msg: Msg) -> None:
        task = asyncio.create_task(self._handle(msg))  # one request never waits for another
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, msg: Msg) -> None:
        kind: type[Request] = (
            PrepareClaims if msg.subject == subjects.claims_prepare(self.node) else UnprepareClaims
        )
        request = msgspec.json.decode(msg.data, type=kind)
        self.requests.append((msg.subject, request))
        self._arrived.set()
        await self.released.wait()
        reply = await self.answer(msg.subject, request)
        if reply is not None:
            await msg.respond(reply)

    async def received(self, count: int) -> None:
        """Wait until `count` requests have arrived."""
        async with asyncio.timeout(WAIT):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()

    def uids(self, index: int) -> list[str]:
        return [c.uid for c in self.requests[index][1].claims]


PrepareCall = grpc.aio.UnaryUnaryMultiCallable[
    v1.NodePrepareResourcesRequest, v1.NodePrepareResourcesResponse
]
UnprepareCall = grpc.aio.UnaryUnaryMultiCallable[
    v1.NodeUnprepareResourcesRequest, v1.NodeUnprepareResourcesResponse
]
SERVICE = "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin"


@dataclass
class Gateway:
    """The gateway's DRA service and a kubelet's channel to it."""

    calls: ClaimCalls
    channel: grpc.aio.Channel

    def prepare_call(self) -> PrepareCall:
        return self.channel.unary_unary(
            f"{SERVICE}/NodePrepareResources",
            request_serializer=v1.NodePrepareResourcesRequest.SerializeToString,
            response_deserializer=v1.NodePrepareResourcesResponse.FromString,
        )

    def prepare_refs(
        self, claims: list[v1.Claim]
    ) -> asyncio.Future[v1.NodePrepareResourcesResponse]:
        """A call started now, with claims as given."""
        request = v1.NodePrepareResourcesRequest(claims=claims)
        return asyncio.ensure_future(self.prepare_call()(request, timeout=CALL_TIMEOUT))

    async def prepare(self, *uids: str, timeout: float = CALL_TIMEOUT) -> dict[str, str]:
        """Prepare one call's claims: the device (or the error) each got, by UID."""
        request = v1.NodePrepareResourcesRequest(
            claims=[v1.Claim(namespace="ns", name=f"claim-{u}", uid=u) for u in uids]
        )
        response = await self.prepare_call()(request, timeout=timeout)
        return {
            uid: r.error or ",".join(d.device_name for d in r.devices)
            for uid, r in response.claims.items()
        }

    async def unprepare(self, *uids: str) -> dict[str, str]:
        request = v1.NodeUnprepareResourcesRequest(
            claims=[v1.Claim(namespace="ns", name=f"claim-{u}", uid=u) for u in uids]
        )
        unprepare: UnprepareCall = self.channel.unary_unary(
            f"{SERVICE}/NodeUnprepareResources",
            request_serializer=v1.NodeUnprepareResourcesRequest.SerializeToString,
            response_deserializer=v1.NodeUnprepareResourcesResponse.FromString,
        )
        response = await unprepare(request, timeout=CALL_TIMEOUT)
        return {uid: r.error for uid, r in response.claims.items()}

    async def waiting(self, count: int) -> None:
        """Wait until exactly `count` calls wait behind a request in flight (the gRPC
        server's threads hand calls to the loop: polled, with a deadline)."""
        deadline = time.monotonic() + WAIT
        while self.calls.waiting() != count:
            assert time.monotonic() < deadline, f"{self.calls.waiting()} calls waiting, not {count}"
            await asyncio.sleep(0.005)


@asynccontextmanager
async def gateway(
    nats_url: str, node: str, socket_dir: Path, limits: BatchLimits, clock: ManualClock
) -> AsyncIterator[Gateway]:
    nc = await nats.connect(nats_url)
    calls = ClaimCalls(node, NatsBus(nc), limits, clock)
    server = dra.server(calls, HealthService(Feed(node), 10.0, 30))
    path = socket_dir / "dra.sock"
    await serve_unix(server, path)
    try:
        async with grpc.aio.insecure_channel(f"unix:{path}") as channel:
            yield Gateway(calls, channel)
    finally:
        await stop_unix(server, path, grace=0)
        await nc.close()


@asynccontextmanager
async def node(
    nats_url: str,
    node_name: str,
    socket_dir: Path,
    answer: Answer = answer_each_claim,
    limits: BatchLimits | None = None,
) -> AsyncIterator[tuple[Gateway, ScriptedPreparer, ManualClock]]:
    """The gateway (batching with `limits`, hold time moved by hand) and the scripted
    preparer, which holds its answers until the test releases them."""
    clock = ManualClock()
    nc = await nats.connect(nats_url)
    preparer = ScriptedPreparer(nc, node_name, answer)
    await preparer.subscribe()
    try:
        async with gateway(
            nats_url, node_name, socket_dir, limits or BatchLimits(hold=HOLD), clock
        ) as gw:
            yield gw, preparer, clock
    finally:
        preparer.released.set()
        await nc.close()


def spawn(call: Awaitable[dict[str, str]]) -> asyncio.Task[dict[str, str]]:
    async def run() -> dict[str, str]:
        return await call

    return asyncio.create_task(run())


async def test_calls_arriving_while_a_request_is_out_go_together_each_with_its_own_claims(
    nats_url: str, node_name: str, short_dir: Path
) -> None:
    """The first call goes at once; four calls that arrive while it is out go as one
    request once it is answered; each call is answered with exactly its own claims."""
    async with node(nats_url, node_name, short_dir) as (gw, preparer, _):
        first = spawn(gw.prepare("a1"))
        await preparer.received(1)
        assert preparer.uids(0) == ["a1"]
        others = [spawn(gw.prepare(f"b{i}", f"c{i}")) for i in range(4)]
        await gw.waiting(4)
        preparer.released.set()
        assert await first == {"a1": device_of("a1")}
        for i, call in enumerate(others):
            assert await call == {f"b{i}": device_of(f"b{i}"), f"c{i}": device_of(f"c{i}")}
        assert len(preparer.requests) == 2
        assert sorted(preparer.uids(1)) == sorted(
            [f"b{i}" for i in range(4)] + [f"c{i}" for i in range(4)]
        )


async def test_a_call_with_nothing_in_flight_goes_at_once(
    nats_url: str, node_name: str, short_dir: Path
) -> None:
    """Calls one after another each go as their own request with no wait: the hold time
    never passes on the test's clock, so any wait would hang."""
    async with node(nats_url, node_name, short_dir) as (gw, preparer, _):
        preparer.released.set()
        for uid in ("a", "b", "c"):
            assert await gw.prepare(uid) == {uid: device_of(uid)}
            assert await gw.unprepare(uid) == {uid: ""}
        assert [p.uids(i) for p in [preparer] for i in range(6)] == [
            ["a"],
            ["a"],
            ["b"],
            ["b"],
            ["c"],
            ["c"],
        ]


async def test_the_same_claim_in_two_waiting_calls_is_sent_once_and_answered_to_both(
    nats_url: str, node_name: str, short_dir: Path
) -> None:
    async with node(nats_url, node_name, short_dir) as (gw, preparer, _):
        first = spawn(gw.prepare("a"))
        await preparer.received(1)
        twice = [spawn(gw.prepare("same", "x")), spawn(gw.prepare("same", "y"))]
        await gw.waiting(2)
        preparer.released.set()
        await first
        assert await twice[0] == {"same": device_of("same"), "x": device_of("x")}
        assert await twice[1] == {"same": device_of("same"), "y": device_of("y")}
        assert sorted(preparer.uids(1)) == ["same", "x", "y"]


async def test_a_uid_named_differently_by_two_calls_goes_in_separate_requests(
    nats_url: str, node_name: str, short_dir: Path
) -> None:
    """The preparer keeps one reference per UID of a request; two calls naming one UID
    differently each need their own answer, so they are not sent together."""
    async with node(nats_url, node_name, short_dir) as (gw, preparer, _):
        first = spawn(gw.prepare("a"))
        await preparer.received(1)
        one = spawn(gw.prepare("u"))
        await gw.waiting(1)
        other = gw.prepare_refs([v1.Claim(namespace="other", name="claim-u", uid="u")])
        await gw.waiting(2)
        preparer.released.set()
        await first
        assert await one == {"u": device_of("u")}
        assert (await other).claims["u"].devices[0].device_name == device_of("u")
        names = sorted(r.claims[0].namespace for _, r in preparer.requests[1:])
        assert names == ["ns", "other"]


async def test_a_batch_the_preparer_refuses_is_sent_again_call_by_call(
    nats_url: str, node_name: str, short_dir: Path
) -> None:
    """The preparer refuses the whole request for one call's claim: the calls are sent
    again one by one, the refused one fails UNAVAILABLE as it would alone, the others are
    prepared."""

    async def refuse_bad(subject: str, request: Request) -> bytes | None:
        if any(c.uid == "bad" for c in request.claims):
            return msgspec.json.encode(ErrorReply(code=ErrorCode.INVALID, detail="bad claim"))
        return await answer_each_claim(subject, request)

    async with node(nats_url, node_name, short_dir, refuse_bad) as (gw, preparer, _):
        first = spawn(gw.prepare("a"))
        await preparer.received(1)
        good = [spawn(gw.prepare("g1")), spawn(gw.prepare("g2"))]
        bad = spawn(gw.prepare("bad"))
        await gw.waiting(3)
        preparer.released.set()
        await first
        assert await good[0] == {"g1": device_of("g1")}
        assert await good[1] == {"g2": device_of("g2")}
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await bad
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "invalid: bad claim" in (refused.value.details() or "")
        assert sorted(preparer.uids(1)) == ["bad", "g1", "g2"]
        assert sorted(u for i in range(2, 5) for u in preparer.uids(i)) == ["bad", "g1", "g2"]


async def test_a_batch_too_large_for_nats_is_sent_again_call_by_call(
    nats_url: str, node_name: str, short_dir: Path
) -> None:
    """Two calls that fit NATS's max_payload alone but not together (the byte bound set
    above it): each is sent alone and prepared."""
    async with node(
        nats_url, node_name, short_dir, limits=BatchLimits(max_bytes=64 * 1024 * 1024, hold=HOLD)
    ) as (gw, preparer, _):
        big = "x" * 253
        count = 1300  # ~700 kB of claims: one call fits in 1 MiB, two do not
        uids = [[f"{side}{i}" for i in range(count)] for side in ("l", "r")]

        async def prepare(these: list[str]) -> dict[str, str]:
            response = await gw.prepare_refs(
                [v1.Claim(namespace=big, name=big, uid=u) for u in these]
            )
            return {
                u: ",".join(d.device_name for d in r.devices) for u, r in response.claims.items()
            }

        first = spawn(gw.prepare("a"))
        await preparer.received(1)
        calls = [spawn(prepare(u)) for u in uids]
        await gw.waiting(2)
        preparer.released.set()
        await first
        for these, call in zip(uids, calls, strict=True):
            assert await call == {u: device_of(u) for u in these}
        assert sorted(len(r.claims) for _, r in preparer.requests[1:]) == [count, count]


async def test_a_batch_that_times_out_fails_each_of_its_calls_unavailable(
    nats_url: str, node_name: str, short_dir: Path
) -> None:
    """The preparer never answers: every call of the batch fails UNAVAILABLE before the
    kubelet's deadline, as each would alone, and the kubelet retries each."""

    async def never(subject: str, request: Request) -> bytes | None:
        return None if len(request.claims) > 1 else await answer_each_claim(subject, request)

    async with node(nats_url, node_name, short_dir, never) as (gw, preparer, _):
        first = spawn(gw.prepare("a"))
        await preparer.received(1)
        calls = [spawn(gw.prepare("b", timeout=1.0)), spawn(gw.prepare("c", timeout=1.0))]
        await gw.waiting(2)
        preparer.released.set()
        await first
        await _each_fails_unavailable(calls, "no reply")


async def _each_fails_unavailable(calls: list[asyncio.Task[dict[str, str]]], detail: str) -> None:
    """Every call ends UNAVAILABLE with `detail` in its message, as it would alone."""
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await call
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        assert detail in (failed.value.details() or "")


async def test_when_the_preparer_is_gone_every_waiting_call_fails_unavailable(
    nats_url: str, node_name: str, short_dir: Path
) -> None:
    async with node(nats_url, node_name, short_dir) as (gw, preparer, _):
        first = spawn(gw.prepare("a"))
        await preparer.received(1)
        calls = [spawn(gw.prepare("b")), spawn(gw.prepare("c"))]
        await gw.waiting(2)
        await preparer.gone()
        preparer.released.set()
        assert await first == {"a": device_of("a")}
        await _each_fails_unavailable(calls, "no responders")


async def test_a_batch_gets_the_earliest_deadline_of_its_calls(
    nats_url: str, node_name: str, short_dir: Path
) -> None:
    """Calls with 3 s and 20 s left share a request: the preparer is given less than the
    3 s call's time, so its answer reaches the gateway in time for that kubelet call."""
    async with node(nats_url, node_name, short_dir) as (gw, preparer, _):
        first = spawn(gw.prepare("a"))
        await preparer.received(1)
        calls = [spawn(gw.prepare("late", timeout=20.0)), spawn(gw.prepare("soon", timeout=3.0))]
        await gw.waiting(2)
        preparer.released.set()
        await first
        assert await calls[0] == {"late": device_of("late")}
        assert await calls[1] == {"soon": device_of("soon")}
        (_, batch) = preparer.requests[1]
        assert sorted(preparer.uids(1)) == ["late", "soon"]
        assert 1000 < batch.timeout_ms <= 2500  # 3 s less both hops' shares


async def test_batches_stay_within_their_claim_and_byte_bounds(
    nats_url: str, node_name: str, short_dir: Path
) -> None:
    """With at most 4 claims or 2 kB a request: calls of 3, 3 and 1 claims go as (3) and
    (3, 1); a call larger than the bound by itself goes alone; calls of long names split
    by bytes."""
    limits = BatchLimits(max_claims=4, max_bytes=2048, hold=HOLD)
    async with node(nats_url, node_name, short_dir, limits=limits) as (gw, preparer, _):
        first = spawn(gw.prepare("a"))
        await preparer.received(1)
        calls = [
            spawn(gw.prepare("p1", "p2", "p3")),
            spawn(gw.prepare("q1", "q2", "q3")),
            spawn(gw.prepare("r1")),
            spawn(gw.prepare(*(f"s{i}" for i in range(6)))),
        ]
        await gw.waiting(4)
        preparer.released.set()
        await first
        for call in calls:
            result = await call
            assert result == {u: device_of(u) for u in result}
        sent = sorted(sorted(preparer.uids(i)) for i in range(1, len(preparer.requests)))
        assert sent == [
            ["p1", "p2", "p3"],
            ["q1", "q2", "q3", "r1"],
            [f"s{i}" for i in range(6)],
        ]

        preparer.released.clear()
        long = "n" * 200  # (40 + 6 * 400 bytes) a claim at most: one per 2 kB request
        first = spawn(gw.prepare("a2"))
        await preparer.received(len(preparer.requests) + 1)
        before = len(preparer.requests)
        named = [
            gw.prepare_refs([v1.Claim(namespace=long, name=long, uid=f"n{i}")]) for i in range(2)
        ]
        await gw.waiting(2)
        preparer.released.set()
        await first
        await asyncio.gather(*named)
        assert sorted(preparer.uids(i)[0] for i in range(before, before + 2)) == ["n0", "n1"]


async def test_a_slow_request_holds_the_waiting_calls_back_only_for_the_hold_time(
    nats_url: str, node_name: str, short_dir: Path
) -> None:
    """A claim that takes long (its request unanswered) does not stall the node's other
    pods: once the hold time has passed, the waiting calls go and are answered."""

    slow = asyncio.Event()

    async def slow_first(subject: str, request: Request) -> bytes | None:
        if request.claims[0].uid == "slow":
            await slow.wait()
        return await answer_each_claim(subject, request)

    async with node(nats_url, node_name, short_dir, slow_first) as (gw, preparer, clock):
        preparer.released.set()
        first = spawn(gw.prepare("slow"))
        await preparer.received(1)
        calls = [spawn(gw.prepare("b")), spawn(gw.prepare("c"))]
        await gw.waiting(2)
        await clock.sleepers(1)
        clock.advance(HOLD)
        assert await calls[0] == {"b": device_of("b")}
        assert await calls[1] == {"c": device_of("c")}
        assert not first.done()
        slow.set()
        assert await first == {"slow": device_of("slow")}


async def test_prepares_and_unprepares_are_never_in_one_request(
    nats_url: str, node_name: str, short_dir: Path
) -> None:
    """An unprepare does not wait for a prepare in flight, and calls of both kinds that
    wait go as one request of each kind."""
    async with node(nats_url, node_name, short_dir) as (gw, preparer, _):
        first_prepare = spawn(gw.prepare("a"))
        first_unprepare = spawn(gw.unprepare("z"))
        await preparer.received(2)
        waiting = [
            spawn(gw.prepare("b")),
            spawn(gw.unprepare("y")),
            spawn(gw.prepare("c")),
            spawn(gw.unprepare("x")),
        ]
        await gw.waiting(4)
        preparer.released.set()
        await asyncio.gather(first_prepare, first_unprepare)
        assert await waiting[0] == {"b": device_of("b")}
        assert await waiting[1] == {"y": ""}
        assert await waiting[2] == {"c": device_of("c")}
        assert await waiting[3] == {"x": ""}
        later = sorted((s, sorted(c.uid for c in r.claims)) for s, r in preparer.requests[2:])
        assert later == [
            (subjects.claims_prepare(node_name), ["b", "c"]),
            (subjects.claims_unprepare(node_name), ["x", "y"]),
        ]


async def test_a_call_the_kubelet_gave_up_while_waiting_is_not_sent(
    nats_url: str, node_name: str, short_dir: Path
) -> None:
    """The kubelet's deadline passes while a call waits: the call ends DEADLINE_EXCEEDED
    for the kubelet (it retries), the calls waiting with it still go and are answered."""
    async with node(nats_url, node_name, short_dir) as (gw, preparer, _):
        first = spawn(gw.prepare("a"))
        await preparer.received(1)
        gives_up = spawn(gw.prepare("gone", timeout=0.3))
        stays = spawn(gw.prepare("stays"))
        await gw.waiting(2)
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await gives_up
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await gw.waiting(1)  # the gateway has seen the kubelet go
        preparer.released.set()
        await first
        assert await stays == {"stays": device_of("stays")}
        assert [preparer.uids(i) for i in range(1, len(preparer.requests))] == [["stays"]]


async def test_with_two_requests_allowed_out_the_third_call_waits_for_one_of_them(
    nats_url: str, node_name: str, short_dir: Path
) -> None:
    """in_flight=2: two calls go at once, each alone; the calls after them wait and go
    together when either is answered."""
    limits = BatchLimits(hold=HOLD, in_flight=2)
    async with node(nats_url, node_name, short_dir, limits=limits) as (gw, preparer, _):
        first = [spawn(gw.prepare("a")), spawn(gw.prepare("b"))]
        await preparer.received(2)
        assert gw.calls.waiting() == 0
        later = [spawn(gw.prepare("c")), spawn(gw.prepare("d"))]
        await gw.waiting(2)
        preparer.released.set()
        assert [await call for call in first] == [{"a": device_of("a")}, {"b": device_of("b")}]
        assert await later[0] == {"c": device_of("c")}
        assert await later[1] == {"d": device_of("d")}
        assert sorted(preparer.uids(0) + preparer.uids(1)) == ["a", "b"]
        assert sorted(preparer.uids(2)) == ["c", "d"]
        assert len(preparer.requests) == 3


def test_batching_is_on_by_default_and_off_with_a_batch_of_zero() -> None:
    default = _batching(load_settings(Settings, {"NODE_NAME": "n"}))
    assert default == BatchLimits(max_claims=64, hold=0.05, in_flight=1)
    env = {"NODE_NAME": "n", "HOSTDEV_CLAIM_BATCH": "8", "HOSTDEV_CLAIM_BATCH_HOLD_MS": "20"}
    assert _batching(load_settings(Settings, env)) == BatchLimits(max_claims=8, hold=0.02)
    assert (
        _batching(load_settings(Settings, {"NODE_NAME": "n", "HOSTDEV_CLAIM_BATCH": "0"})) is None
    )
