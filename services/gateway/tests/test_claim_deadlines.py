"""The gateway's share of the kubelet's deadline: the preparer's reply arrives while the
gateway still waits, and the gateway still has time to answer the kubelet."""

from __future__ import annotations

import asyncio
import time

import msgspec
import nats
from nats.aio.msg import Msg

from hostdev_bus import NatsBus
from hostdev_events import subjects
from hostdev_events.claims import ClaimOutcome, ClaimRef, PrepareClaims, PrepareClaimsReply
from hostdev_gateway.claims import ClaimCalls

NODE = "node-a"
DEADLINE_PASSED = "the kubelet's deadline passed"


async def test_a_preparer_that_uses_its_whole_deadline_is_still_heard(nats_url: str) -> None:
    """A preparer whose claims all run to the deadline it was given (as thousands of claims
    on a loaded node do) answers at that deadline: the gateway is still waiting then and
    returns each claim's error, where it used to give up at the same instant the preparer
    answered and fail the whole call."""
    nc = await nats.connect(nats_url)
    asked: list[float] = []

    async def preparer_at_its_deadline(msg: Msg) -> None:
        request = msgspec.json.decode(msg.data, type=PrepareClaims)
        asked.append(request.timeout_ms / 1000)
        await asyncio.sleep(request.timeout_ms / 1000)  # the claims' work, to the deadline
        reply = PrepareClaimsReply(
            outcomes={c.uid: ClaimOutcome(error=DEADLINE_PASSED) for c in request.claims}
        )
        await msg.respond(msgspec.json.encode(reply))

    await nc.subscribe(subjects.claims_prepare(NODE), cb=preparer_at_its_deadline)
    try:
        claims = [ClaimRef(namespace="ns", name=f"c{i}", uid=f"u{i}") for i in range(3)]
        started = time.monotonic()
        outcomes = await ClaimCalls(NODE, NatsBus(nc)).prepare(claims, remaining=3.0)
        took = time.monotonic() - started
        assert {uid: o.error for uid, o in outcomes.items()} == {
            c.uid: DEADLINE_PASSED for c in claims
        }
        assert len(asked) == 1
        assert asked[0] <= 2.5  # the kubelet's 3 s, less both hops' shares
        assert took < 3.0
    finally:
        await nc.close()
