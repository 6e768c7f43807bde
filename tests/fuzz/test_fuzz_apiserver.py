"""API server answers, fuzzed: the preparer reads claims through a proxy in front of the API
emulator that answers claims of the `fuzz` namespace with odd shapes, missing fields, error
statuses, non-JSON bodies and no answer at all. Every prepare gets an outcome within its
deadline: devices, or an error that is not an unexpected exception."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import nats
import pytest
import pytest_asyncio
from aiohttp import web
from hypothesis import strategies as st

from hostdev_bus import NatsBus, RemoteError
from hostdev_events import subjects
from hostdev_events.claims import (
    ClaimRef,
    PrepareClaims,
    PrepareClaimsReply,
    UnprepareClaims,
    UnprepareClaimsReply,
)
from hostdev_kube.models import ResourceClaim
from hostdev_testing import fuzz
from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.services import NodeConfig, Services

FUZZ_NAMESPACE = "fuzz"
PREPARE_MS = 800  # the kubelet's deadline for these prepares
REPLY_DEADLINE = 10.0
DEMO_DEVICES = ("kvm", "udmabuf", "x11", "tun", "vhost-net", "render-d128")
# The preparer's own words for an exception it did not expect (flow.failure).
UNEXPECTED = "internal error"


@dataclass(frozen=True)
class Answer:
    """What the API server says to one claim read."""

    status: int
    body: bytes
    hang: bool = False  # never answer (the client gives up)


@dataclass
class Proxy:
    """The API emulator, except for reads of claims in FUZZ_NAMESPACE, answered by `answer`."""

    upstream: str
    answer: Answer = field(default_factory=lambda: Answer(404, b""))
    reads: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        parts = request.path.split("/")
        if request.method == "GET" and FUZZ_NAMESPACE in parts and "resourceclaims" in parts:
            self.reads += 1
            if self.answer.hang:
                await asyncio.Event().wait()  # cancelled when the client goes
            return web.Response(
                status=self.answer.status,
                body=self.answer.body,
                content_type="application/json",
            )
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                self.upstream + request.path_qs,
                data=await request.read(),
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            ) as upstream,
        ):
            return web.Response(
                status=upstream.status,
                body=await upstream.read(),
                content_type=upstream.content_type,
            )


@pytest_asyncio.fixture
async def proxy(node_config: NodeConfig) -> AsyncIterator[tuple[Proxy, str]]:
    """The proxy on a free loopback port, and its URL."""
    handler = Proxy(node_config.api_url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield handler, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _claim_bodies(node: str, driver: str) -> st.SearchStrategy[object]:
    """Claims aimed at this node's devices, with every field liable to be odd or missing."""
    result = st.fixed_dictionaries(
        {},
        optional={
            "request": st.one_of(st.just("dev"), fuzz.texts()),
            "driver": st.one_of(st.just(driver), fuzz.texts()),
            "pool": st.one_of(st.just(node), fuzz.texts()),
            "device": st.one_of(st.sampled_from(DEMO_DEVICES), fuzz.texts()),
            "shareID": st.one_of(fuzz.texts(), st.integers()),
            "adminAccess": fuzz.json_values(),
        },
    )
    devices = st.fixed_dictionaries(
        {},
        optional={
            "results": st.one_of(st.lists(result, max_size=3), fuzz.json_values()),
            "config": st.lists(fuzz.json_values(), max_size=2),
        },
    )
    metadata = st.fixed_dictionaries(
        {},
        optional={
            "name": fuzz.texts(),
            "namespace": st.just(FUZZ_NAMESPACE),
            "uid": fuzz.texts(),
            "annotations": st.one_of(
                st.dictionaries(fuzz.texts(), fuzz.texts()), fuzz.json_values()
            ),
        },
    )
    aimed = st.fixed_dictionaries(
        {},
        optional={
            "metadata": metadata,
            "status": st.fixed_dictionaries(
                {},
                optional={
                    "allocation": st.one_of(
                        st.fixed_dictionaries({"devices": devices}), fuzz.json_values()
                    )
                },
            ),
        },
    )
    return st.one_of(aimed, fuzz.shaped(ResourceClaim), fuzz.json_values())


def answers(node: str, driver: str) -> st.SearchStrategy[Answer]:
    """Claims of odd shapes, statuses from 200 to 503 with any body, and silence."""
    statuses = st.sampled_from(
        [200, 200, 200, 201, 204, 301, 400, 401, 403, 404, 409, 410, 429, 500, 503]
    )
    bodies = st.one_of(
        _claim_bodies(node, driver).map(fuzz.encode),
        st.binary(max_size=128),
        st.fixed_dictionaries(
            {"kind": st.just("Status"), "reason": fuzz.texts(), "message": fuzz.texts()}
        ).map(fuzz.encode),
    )
    return st.one_of(
        st.builds(Answer, statuses, bodies),
        st.just(Answer(200, b"", hang=True)),
    )


async def test_every_api_answer_to_a_claim_read_gives_an_outcome_within_the_deadline(
    services: Services,
    node_config: NodeConfig,
    cluster: Cluster,
    proxy: tuple[Proxy, str],
) -> None:
    """Whatever the API server says about a claim, the prepare answers within the kubelet's
    deadline with devices or an error (never an unexpected exception), the unprepare that
    follows succeeds, and afterwards a real claim still prepares."""
    handler, url = proxy
    services.per_service_env["preparer"] = {"HOSTDEV_KUBE_API_URL": url}
    await services.start("allocator", "cdi-writer", "discovery", "preparer")
    bus = NatsBus(await nats.connect(node_config.nats_url))
    node = node_config.node
    try:

        async def check(answer: Answer) -> None:
            handler.answer = answer
            ref = ClaimRef(namespace=FUZZ_NAMESPACE, name="c", uid=str(uuid.uuid4()))
            reply = await bus.request(
                subjects.claims_prepare(node),
                PrepareClaims(claims=(ref,), timeout_ms=PREPARE_MS),
                PrepareClaimsReply,
                REPLY_DEADLINE,
            )
            outcome = reply.outcomes[ref.uid]
            assert outcome.devices or outcome.error, answer
            assert not outcome.error.startswith(UNEXPECTED), (answer, outcome.error)
            undone = await bus.request(
                subjects.claims_unprepare(node),
                UnprepareClaims(claims=(ref,), timeout_ms=5000),
                UnprepareClaimsReply,
                REPLY_DEADLINE,
            )
            assert undone.errors == {ref.uid: ""}, (answer, undone)

        await fuzz.run_async("api claim reads (preparer)", answers(node, node_config.driver), check)
        assert handler.reads
        claim = await cluster.allocated_claim("default", "after-fuzz", [Allocated("dev", "kvm")])
        ref = ClaimRef(namespace=claim.namespace, name=claim.name, uid=claim.uid)
        prepared = await bus.request(
            subjects.claims_prepare(node),
            PrepareClaims(claims=(ref,), timeout_ms=5000),
            PrepareClaimsReply,
            REPLY_DEADLINE,
        )
        assert prepared.outcomes[claim.uid].error == ""
        assert [d.device for d in prepared.outcomes[claim.uid].devices] == ["kvm"]
    except RemoteError as err:
        pytest.fail(f"the preparer failed as a whole: {err.code}: {err.detail}")
    finally:
        await bus.nc.close()
