"""Kubelet claim calls turned into NATS requests to the node's preparer: one per call, or,
with batching on, one per batch of concurrent calls (batching.py)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TypeVar

from opentelemetry import trace

from hostdev_bus import Bus, BusError, PayloadTooLarge, RemoteError
from hostdev_events import subjects
from hostdev_events.claims import (
    ClaimOutcome,
    ClaimRef,
    PrepareClaims,
    PrepareClaimsReply,
    UnprepareClaims,
    UnprepareClaimsReply,
)
from hostdev_gateway.batching import Batcher, BatchLimits
from hostdev_gateway.errors import DriverUnavailable, TooManyClaims
from hostdev_runtime import telemetry
from hostdev_runtime.clock import Clock, SystemClock

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("hostdev_gateway")

R = TypeVar("R", PrepareClaimsReply, UnprepareClaimsReply)

KUBELET_TIMEOUT = 45.0  # what the kubelet allows a prepare or unprepare when no deadline came
# Each hop back needs time: the gateway builds and sends the gRPC answer after its wait for
# the preparer ends, and the preparer's reply must arrive before that wait ends. A fixed
# 50 ms was too little for thousands of claims on a loaded node (the kubelet saw
# DEADLINE_EXCEEDED, or the whole call failed for a reply that came just too late), so
# each hop keeps a share of the time left, 50 ms at least.
REPLY_MARGIN = 0.05
REPLY_SHARE = 0.1
NO_RESULT = "the preparer returned no result for this claim"


__all__ = ["ClaimCalls", "DriverUnavailable", "TooManyClaims"]


class ClaimCalls:
    """Prepare and unprepare for one node, independent of the DRA API version.

    With `batch` limits, concurrent calls share requests (batching.py); without, each call
    is one request.
    """

    def __init__(
        self,
        node: str,
        bus: Bus,
        batch: BatchLimits | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.node = node
        self.bus = bus
        self._prepares: Batcher[ClaimOutcome] | None = None
        self._unprepares: Batcher[str] | None = None
        if batch is not None:
            clock = clock or SystemClock()
            self._prepares = Batcher(self._send_prepare, batch, clock)
            self._unprepares = Batcher(self._send_unprepare, batch, clock)

    def waiting(self) -> int:
        """How many calls wait for a request in flight to be answered before they go."""
        return sum(b.waiting for b in (self._prepares, self._unprepares) if b is not None)

    def _split(self, claims: list[ClaimRef]) -> tuple[dict[str, str], tuple[ClaimRef, ...]]:
        """Errors for claims the kubelet sent incomplete, and the claims to pass on."""
        errors: dict[str, str] = {}
        for claim in claims:
            if not claim.uid:
                errors[claim.uid] = "claim has no UID"
            elif not _usable_uid(self.node, claim.uid):
                errors[claim.uid] = f"claim UID {claim.uid[:80]!r} is not a Kubernetes UID"
            elif not claim.name or not claim.namespace:
                errors[claim.uid] = f"claim {claim.uid} has no name or namespace"
        return errors, tuple(c for c in claims if c.uid not in errors)

    def _span(self, name: str, claims: list[ClaimRef]) -> AbstractContextManager[trace.Span]:
        return tracer.start_as_current_span(
            name,
            kind=trace.SpanKind.SERVER,
            attributes={
                telemetry.ATTR_CLAIM_UID: [c.uid for c in claims],
                telemetry.ATTR_NODE: self.node,
            },
        )

    async def prepare(
        self, claims: list[ClaimRef], remaining: float | None
    ) -> dict[str, ClaimOutcome]:
        """One outcome per requested UID, in request order."""
        errors, valid = self._split(claims)
        outcomes = {uid: ClaimOutcome(error=e) for uid, e in errors.items()}
        with self._span("NodePrepareResources", claims):
            if valid:
                left = KUBELET_TIMEOUT if remaining is None else remaining
                if self._prepares is None:
                    reply = await self._send_prepare(valid, left)
                else:
                    reply = await self._prepares.submit(valid, left)
                for claim in valid:
                    outcomes[claim.uid] = reply.get(claim.uid, ClaimOutcome(error=NO_RESULT))
        return {c.uid: outcomes[c.uid] for c in claims}

    async def unprepare(self, claims: list[ClaimRef], remaining: float | None) -> dict[str, str]:
        """One error text per requested UID; empty means unprepared."""
        errors, valid = self._split(claims)
        with self._span("NodeUnprepareResources", claims):
            if valid:
                left = KUBELET_TIMEOUT if remaining is None else remaining
                if self._unprepares is None:
                    reply = await self._send_unprepare(valid, left)
                else:
                    reply = await self._unprepares.submit(valid, left)
                for claim in valid:
                    errors[claim.uid] = reply.get(claim.uid, NO_RESULT)
        return {c.uid: errors[c.uid] for c in claims}

    async def _send_prepare(
        self, claims: tuple[ClaimRef, ...], left: float
    ) -> Mapping[str, ClaimOutcome]:
        timeout = _budget(left)
        message = PrepareClaims(claims=claims, timeout_ms=_budget_ms(timeout))
        subject = subjects.claims_prepare(self.node)
        return (await self._request(subject, message, PrepareClaimsReply, timeout)).outcomes

    async def _send_unprepare(self, claims: tuple[ClaimRef, ...], left: float) -> Mapping[str, str]:
        timeout = _budget(left)
        message = UnprepareClaims(claims=claims, timeout_ms=_budget_ms(timeout))
        subject = subjects.claims_unprepare(self.node)
        return (await self._request(subject, message, UnprepareClaimsReply, timeout)).errors

    async def _request(
        self, subject: str, message: PrepareClaims | UnprepareClaims, reply: type[R], timeout: float
    ) -> R:
        try:
            return await self.bus.request(subject, message, reply, timeout)
        except RemoteError as err:
            raise DriverUnavailable(f"preparer failed: {err.code}: {err.detail}") from err
        except PayloadTooLarge as err:
            raise TooManyClaims(
                f"{len(message.claims)} claims ({err.size} bytes) are more than one request "
                "to the preparer can carry"
            ) from err
        except BusError as err:
            raise DriverUnavailable(f"preparer unavailable: {err}") from err


def _usable_uid(node: str, uid: str) -> bool:
    """Whether `uid` can key the claim's checkpoint (a Kubernetes UID always can)."""
    try:
        subjects.checkpoint_key(node, uid)
    except subjects.InvalidName:
        return False
    return True


def _budget(left: float) -> float:
    """How long the gateway waits for the preparer, of the `left` seconds the kubelet waits."""
    return max(left - max(REPLY_MARGIN, left * REPLY_SHARE), 0.001)


def _budget_ms(wait: float) -> int:
    """The preparer's deadline, in ms: its reply must reach a gateway still waiting."""
    return max(int((wait - max(REPLY_MARGIN, wait * REPLY_SHARE)) * 1000), 1)
