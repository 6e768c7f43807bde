"""The floor: the preparer's handlers in this process, without NATS, gRPC or HTTP.

The same code the preparer runs (`hostdev_preparer.handlers.on_prepare/on_unprepare`) on
the real families, the real ledger and the real CDI writer handlers (spec files really
written), with in-memory KV stores, a bus that calls the handlers directly and claims
already decoded. What the full stack adds on top is transport: gRPC, NATS requests,
JetStream KV round trips, the claim read over HTTP, and five processes sharing the CPU.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from prometheus_client import CollectorRegistry

from bench.stack import DRIVER, NODE, Work
from hostdev_allocator import handlers as alloc_handlers
from hostdev_allocator.ledger import Ledger
from hostdev_bus import MalformedReply, MemoryKv, RemoteError, Unavailable
from hostdev_cdi import filesystem
from hostdev_cdi_writer import handlers as cdi_handlers
from hostdev_devconfig import load_config
from hostdev_events import subjects
from hostdev_events.alloc import Hold
from hostdev_events.base import Message
from hostdev_events.claims import ClaimRef, PrepareClaims, UnprepareClaims
from hostdev_events.inventory import Device
from hostdev_events.state import Checkpoint
from hostdev_families import build_families, discover_all
from hostdev_kube import NotFound, ResourceClaim
from hostdev_preparer.flow import Deps
from hostdev_preparer.handlers import on_prepare, on_unprepare
from hostdev_preparer.inventory import InventoryView
from hostdev_preparer.locks import KeyedLocks
from hostdev_runtime.clock import SystemClock
from hostdev_runtime.errors import HandlerError
from hostdev_runtime.metrics import ClaimMetrics
from hostdev_sysfs import HostRoot
from hostdev_testing.cluster import Cluster
from hostdev_testing.fakenetlink import FakeNetlink
from hostdev_testing.fakesysfs import FakeKernel

R = TypeVar("R", bound=Message)
Handler = Callable[[Any], Awaitable[Message]]

KUBELET_TIMEOUT_MS = 45_000


class DirectBus:
    """The Bus seam with every request answered by a handler in this process.

    Replies are the handlers' own Structs (no JSON round trip); a HandlerError becomes
    the RemoteError the requester would have seen, as the runner turns it into an ErrorReply.
    """

    def __init__(self, routes: Mapping[str, Handler]) -> None:
        self.routes = dict(routes)

    async def request(self, subject: str, message: Message, reply: type[R], timeout: float) -> R:
        handler = self.routes.get(subject)
        if handler is None:
            raise Unavailable(subject, "no responders")
        try:
            answer = await handler(message)
        except HandlerError as err:
            raise RemoteError(err.code, err.detail, subject) from err
        if not isinstance(answer, reply):
            raise MalformedReply(subject, f"expected {reply.__name__}, got {type(answer)}")
        return answer

    async def publish(self, subject: str, message: Message) -> None:
        return None


class DecodedClaims:
    """A ClaimReader over claims decoded once, up front."""

    def __init__(self, claims: Iterable[ResourceClaim]) -> None:
        self.claims = {(c.metadata.namespace, c.metadata.name): c for c in claims}

    async def get_claim(self, namespace: str, name: str) -> ResourceClaim:
        found = self.claims.get((namespace, name))
        if found is None:
            raise NotFound(404, "NotFound", f"{namespace}/{name}")
        return found

    async def get_claim_object(self, namespace: str, name: str) -> dict[str, Any]:
        # Host-path claims never write device status; the floor has no API to write to.
        raise NotFound(404, "NotFound", f"{namespace}/{name}")

    async def replace_claim_status(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        raise NotFound(404, "NotFound", f"{namespace}/{name}")


async def fetch_claims(cluster: Cluster, work: Iterable[Work]) -> list[ResourceClaim]:
    """Read the claims from the emulator and decode them as the preparer's client does."""
    found = []
    for item in work:
        path = f"/apis/resource.k8s.io/v1/namespaces/{item.claim.namespace}/resourceclaims/{item.claim.name}"
        raw = await cluster.call("GET", path)
        found.append(msgspec.json.decode(msgspec.json.encode(raw), type=ResourceClaim))
    return found


async def floor_deps(
    root: Path, devices_config: Path, cdi_root: Path, claims: Iterable[ResourceClaim]
) -> Deps:
    """Deps of the preparer wired to in-process fakes around the real handlers."""
    host = HostRoot(root)
    families = build_families(
        load_config(devices_config), host, FakeKernel(root), FakeNetlink(root)
    )
    inventory_kv: MemoryKv[Device] = MemoryKv()
    for device in discover_all(families):
        await inventory_kv.create(subjects.device_key(NODE, device.name), device)
    ledger = Ledger(NODE, MemoryKv[Hold]())
    alloc_deps = alloc_handlers.Deps(ledger=ledger)
    # Spec files are written where the service writes them in this directory: on the event
    # loop when it is in memory (HOSTDEV_CDI_WRITE_ON_LOOP=auto).
    cdi_deps = cdi_handlers.Deps(
        node=NODE, driver=DRIVER, cdi_root=cdi_root, on_loop=filesystem.in_memory(cdi_root)
    )
    bus = DirectBus(
        {
            subjects.alloc_reserve(NODE): partial(alloc_handlers.on_reserve, deps=alloc_deps),
            subjects.alloc_release(NODE): partial(alloc_handlers.on_release, deps=alloc_deps),
            subjects.cdi_write(NODE): partial(cdi_handlers.on_write, deps=cdi_deps),
            subjects.cdi_remove(NODE): partial(cdi_handlers.on_remove, deps=cdi_deps),
        }
    )
    return Deps(
        node=NODE,
        driver=DRIVER,
        bus=bus,
        checkpoints=MemoryKv[Checkpoint](),
        inventory=InventoryView(NODE, inventory_kv),
        claims=DecodedClaims(claims),
        families=families,
        clock=SystemClock(),
        locks=KeyedLocks(),
        metrics=ClaimMetrics(CollectorRegistry()),
    )


def _ref(work: Work) -> ClaimRef:
    c = work.claim
    return ClaimRef(namespace=c.namespace, name=c.name, uid=c.uid)


class FloorTarget:
    """Calls on_prepare/on_unprepare as the preparer's routes would, one claim per call."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def prepare(self, work: Work) -> str:
        msg = PrepareClaims(claims=(_ref(work),), timeout_ms=KUBELET_TIMEOUT_MS)
        reply = await on_prepare(msg, self.deps)
        return reply.outcomes[work.claim.uid].error

    async def unprepare(self, work: Work) -> str:
        msg = UnprepareClaims(claims=(_ref(work),), timeout_ms=KUBELET_TIMEOUT_MS)
        reply = await on_unprepare(msg, self.deps)
        return reply.errors[work.claim.uid]
