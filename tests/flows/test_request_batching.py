"""The preparer's requests to the allocator and the CDI writer, coalesced per subject
(HOSTDEV_REQUEST_BATCH), across the real services on real NATS: every claim is reserved,
written, removed and released once, fewer messages carry them, and each claim gets its
own outcome."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.subscription import Subscription

from hostdev_bus import NatsBus
from hostdev_events import subjects
from hostdev_events.batch import Batch
from hostdev_events.claims import (
    ClaimRef,
    PrepareClaims,
    PrepareClaimsReply,
    UnprepareClaims,
    UnprepareClaimsReply,
)
from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.responder import settled
from hostdev_testing.services import NodeConfig, Services

CLAIMS = 8
_TAG = msgspec.json.Decoder(dict[str, object])


class Wire:
    """Messages and requests seen on the preparer's four coalesced subjects."""

    def __init__(self, client: NatsClient, subs: dict[str, Subscription]) -> None:
        self._client = client
        self._subs = subs

    async def seen(self) -> dict[str, tuple[int, int, bool]]:
        """Per subject: (messages, requests they carried, whether any was a Batch)."""
        await self._client.flush()
        seen = {}
        for name, sub in self._subs.items():
            messages, requests, batched = 0, 0, False
            for _ in range(sub.pending_msgs):
                data = (await sub.next_msg(timeout=5)).data
                messages += 1
                if _TAG.decode(data).get("type") == "batch.v1":
                    requests += len(msgspec.json.decode(data, type=Batch).items)
                    batched = True
                else:
                    requests += 1
            seen[name] = (messages, requests, batched)
        return seen


@asynccontextmanager
async def watching(nats_url: str, node: str) -> AsyncIterator[Wire]:
    client = await nats.connect(nats_url)
    try:
        subs = {
            name: await client.subscribe(getattr(subjects, name)(node))
            for name in ("alloc_reserve", "cdi_write", "cdi_remove", "alloc_release")
        }
        await settled(client)
        yield Wire(client, subs)
    finally:
        await client.close()


@pytest.mark.parametrize("batching", ["true", "false"])
async def test_concurrent_claims_are_each_reserved_and_written_once_in_fewer_messages(
    services: Services, node_config: NodeConfig, cluster: Cluster, batching: str
) -> None:
    """Eight claims in one prepare, then in one unprepare (one with a device that does not
    exist): each gets its own outcome; each claim's reserve, spec write, spec removal and
    release is sent once. Batching on, requests that met one out travel together; off,
    each is its own plain message."""
    services.extra_env["HOSTDEV_REQUEST_BATCH"] = batching
    await services.start("allocator", "cdi-writer", "discovery", "preparer")
    node = node_config.node
    claims = [
        await cluster.allocated_claim("default", f"vm-{i}", [Allocated("kvm", "kvm")])
        for i in range(CLAIMS - 1)
    ]
    missing = await cluster.allocated_claim("default", "nodevice", [Allocated("x", "no-such")])
    refs = tuple(ClaimRef(namespace=c.namespace, name=c.name, uid=c.uid) for c in claims)
    absent = ClaimRef(namespace=missing.namespace, name=missing.name, uid=missing.uid)
    client = await nats.connect(node_config.nats_url)
    bus = NatsBus(client)
    try:
        async with watching(node_config.nats_url, node) as wire:
            prepared = await bus.request(
                subjects.claims_prepare(node),
                PrepareClaims(claims=(*refs, absent), timeout_ms=20_000),
                PrepareClaimsReply,
                25,
            )
            assert {uid for uid, o in prepared.outcomes.items() if not o.error} == {
                r.uid for r in refs
            }
            assert prepared.outcomes[absent.uid].error
            for ref in refs:
                (device,) = prepared.outcomes[ref.uid].devices
                assert device.device == "kvm"
            specs = sorted(node_config.cdi_root.glob(f"k8s.{node_config.driver}-device_*.json"))
            assert len(specs) == len(refs)
            unprepared = await bus.request(
                subjects.claims_unprepare(node),
                UnprepareClaims(claims=(*refs, absent), timeout_ms=20_000),
                UnprepareClaimsReply,
                25,
            )
            assert unprepared.errors == {r.uid: "" for r in (*refs, absent)}
            assert list(node_config.cdi_root.glob(f"k8s.{node_config.driver}-*.json")) == []
            seen = await wire.seen()
    finally:
        await client.close()
    # The missing device fails before any request of its claim; its unprepare finds no
    # record and sweeps whatever a crash could have left (a spec, a hold) all the same.
    requests = Counter({name: r for name, (_, r, _) in seen.items()})
    assert requests == Counter(
        alloc_reserve=len(refs), cdi_write=len(refs), cdi_remove=CLAIMS, alloc_release=CLAIMS
    )
    if batching == "false":
        assert all(m == r and not b for m, r, b in seen.values()), seen
    else:
        assert sum(m for m, _, _ in seen.values()) < sum(requests.values()), seen
        assert any(b for _, _, b in seen.values()), seen
