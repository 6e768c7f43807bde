"""NATS topologies under faults: a JetStream cluster losing a server mid-load, a node's leaf
losing its hub, and a node's only server restarting mid-prepare. The kubelet retries as it
does; afterwards every claim it was told is prepared has exactly its checkpoint, spec and
hold, and unprepare leaves nothing."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import nats.errors
import pytest
import pytest_asyncio
from nats.js.api import ExternalStream, StreamConfig, StreamSource

from hostdev_bus import BusError, NatsBus, NatsKv, RequestTimeout
from hostdev_events import subjects
from hostdev_events.alloc import Hold
from hostdev_events.inventory import Device, GetInventory, InventorySnapshot
from hostdev_events.state import Checkpoint, ClaimStep
from hostdev_testing import nats_topology
from hostdev_testing.cluster import Allocated, Claim, Cluster
from hostdev_testing.kubelet import KubeletSimulator, PluginCallError
from hostdev_testing.kubelet_dra import RegisteredPlugin
from hostdev_testing.kubelet_types import PreparedClaim
from hostdev_testing.nats_topology import ConfiguredServer
from hostdev_testing.services import NodeConfig, Services, running_services

# The kubelet retries a failed prepare with a back-off; this is its first step.
KUBELET_BACKOFF = 0.1
CONVERGE_WITHIN = 30.0
LEAF_DOMAIN = "node-leaf"
# Devices of the demo host one claim at a time; the rest (kvm, tun, x11) are shared.
EXCLUSIVE = ("udmabuf",)


async def prepared_eventually(plugin: RegisteredPlugin, claim: Claim) -> PreparedClaim:
    """Prepare until it succeeds, as the kubelet retries a pod's prepare step."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONVERGE_WITHIN
    last = ""
    while loop.time() < deadline:
        try:
            outcome = await plugin.prepare([claim], timeout=5)
        except PluginCallError as err:
            last = f"{err.code}: {err.details}"
        else:
            result = outcome.claims[claim.uid]
            if not result.error:
                return result
            last = result.error
        await asyncio.sleep(KUBELET_BACKOFF)  # the kubelet's back-off, not a wait for state
    raise AssertionError(f"claim {claim.uid} never prepared: {last}")


async def unprepared_eventually(plugin: RegisteredPlugin, claim: Claim) -> None:
    """Unprepare until it succeeds, as the kubelet retries."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONVERGE_WITHIN
    last = ""
    while loop.time() < deadline:
        try:
            outcome = await plugin.unprepare([claim], timeout=5)
        except PluginCallError as err:
            last = f"{err.code}: {err.details}"
        else:
            if not outcome.claims[claim.uid].error:
                return
            last = outcome.claims[claim.uid].error
        await asyncio.sleep(KUBELET_BACKOFF)  # the kubelet's back-off, not a wait for state
    raise AssertionError(f"claim {claim.uid} never unprepared: {last}")


async def node_state(
    url: str, node: str, expect: int = 0
) -> tuple[dict[str, Checkpoint], dict[str, Hold]]:
    """Every checkpoint and every ledger hold of `node`, read from KV; with `expect`, once
    at least that many checkpoints are listed (a consumer made while a stream's leader is
    being elected may see none yet)."""
    if expect:
        found: dict[str, Checkpoint] = {}

        async def listed() -> bool:
            nonlocal found
            try:
                found = (await node_state(url, node))[0]
            except (RequestTimeout, nats.errors.TimeoutError):
                return False  # no leader yet for a stream: ask again, as any client would
            return len(found) >= expect

        await nats_topology.eventually(f"{expect} checkpoints not listed", listed, 10.0)
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        checkpoints = await NatsKv.open(js, subjects.CHECKPOINT_BUCKET, Checkpoint)
        ledger = await NatsKv.open(js, subjects.LEDGER_BUCKET, Hold)
        prefix = subjects.device_key_prefix(node)
        found_checkpoints = {}
        for key in await checkpoints.keys(prefix):
            got = await checkpoints.get(key)
            assert got is not None
            found_checkpoints[got[0].claim.uid] = got[0]
        holds = {}
        for key in await ledger.keys(prefix):
            held = await ledger.get(key)
            if held is not None and held[0].holders:
                holds[key.removeprefix(prefix)] = held[0]
        return found_checkpoints, holds
    finally:
        await nc.close()


def assert_exactly_prepared(
    config: NodeConfig,
    told: dict[str, PreparedClaim],
    checkpoints: dict[str, Checkpoint],
    holds: dict[str, Hold],
) -> None:
    """Each claim the kubelet was told is prepared has one completed checkpoint recording
    what the kubelet was told (not stale), one spec, and a hold; nothing else is held."""
    assert set(checkpoints) == set(told), "lost or extra checkpoints"
    for uid, answer in told.items():
        checkpoint = checkpoints[uid]
        assert checkpoint.step == ClaimStep.COMPLETED, (uid, checkpoint.step)
        assert checkpoint.outcome is not None
        recorded = [(d.device, tuple(d.cdi_device_ids)) for d in checkpoint.outcome.devices]
        reported = [(d.device_name, d.cdi_device_ids) for d in answer.devices]
        assert recorded == reported, (uid, recorded, reported)
        specs = list(config.cdi_root.glob(f"*{uid}*.json"))
        assert len(specs) == 1, (uid, specs)
    holders = {uid for hold in holds.values() for uid in hold.holders}
    assert holders <= set(told), "a hold of a claim nobody was told is prepared"
    exclusive = {
        uid for uid, a in told.items() if any(d.device_name in EXCLUSIVE for d in a.devices)
    }
    assert exclusive <= holders, "an exclusive device prepared without its hold"
    for device in EXCLUSIVE:
        assert len(holds.get(device, Hold()).holders) <= 1, (device, holds[device])


def assert_nothing_left(
    config: NodeConfig, checkpoints: dict[str, Checkpoint], holds: dict[str, Hold]
) -> None:
    """After every unprepare: no checkpoint, no hold, no spec."""
    assert checkpoints == {}
    assert holds == {}
    assert list(config.cdi_root.glob("*.json")) == []


@pytest_asyncio.fixture
async def servers() -> AsyncIterator[list[ConfiguredServer]]:
    """Servers a test starts; each is stopped at the end, whatever happened."""
    started: list[ConfiguredServer] = []
    try:
        yield started
    finally:
        for server in started:
            server.stop()


@dataclasses.dataclass
class Node:
    """The node's services on the topology under test, and the kubelet's plugin."""

    config: NodeConfig
    services: Services
    plugin: RegisteredPlugin


@contextlib.asynccontextmanager
async def started_node(
    config: NodeConfig, kubelet: KubeletSimulator, env: dict[str, str] | None = None
) -> AsyncIterator[Node]:
    """The five services on `config`'s NATS, registered with the kubelet."""
    async with running_services(config) as services:
        services.extra_env.update(env or {})
        await services.start()
        plugin = await kubelet.wait_for_driver(config.driver, timeout=15)
        yield Node(config, services, plugin)


async def _claims(cluster: Cluster, count: int, prefix: str) -> list[Claim]:
    """One claim of the exclusive udmabuf, the others of the shared kvm."""
    return [
        await cluster.allocated_claim(
            "default", f"{prefix}-{i}", [Allocated("dev", "udmabuf" if i == 0 else "kvm")]
        )
        for i in range(count)
    ]


async def test_cluster_losing_a_server_mid_load_loses_no_checkpoint(
    node_config: NodeConfig,
    cluster: Cluster,
    kubelet: KubeletSimulator,
    servers: list[ConfiguredServer],
    short_dir: Path,
) -> None:
    """Three JetStream servers hold the buckets at replication 3; the server the services are
    connected to is SIGKILLed while 24 prepares are in flight. Every prepare converges on
    retry, each checkpoint records exactly what the kubelet was told, and unprepare leaves
    nothing."""
    members = nats_topology.cluster(short_dir / "nats")
    servers.extend(members)
    for member in members:
        member.start()
    await nats_topology.jetstream_ready(members[0].url, replicas=3)
    # The buckets are made at R3 by the code the services run with HOSTDEV_KV_REPLICAS=3,
    # ahead of them: on a loaded machine a cluster placing three new streams at once can
    # take longer than a service's first bind waits (it would crash and be restarted).
    await _create_buckets(members[0].url, replicas=3)
    config = dataclasses.replace(node_config, nats_url=members[0].url)
    claims = await _claims(cluster, 24, "load")
    async with started_node(config, kubelet, {"HOSTDEV_KV_REPLICAS": "3"}) as node:
        calls = [asyncio.ensure_future(prepared_eventually(node.plugin, c)) for c in claims]
        await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
        members[0].kill()  # the others are still in flight
        answers = await asyncio.gather(*calls)
        told = {c.uid: a for c, a in zip(claims, answers, strict=True)}
        checkpoints, holds = await node_state(members[1].url, config.node, len(told))
        assert_exactly_prepared(config, told, checkpoints, holds)
        info = await _bucket_replicas(members[1].url)
        assert info == {
            "KV_hostdev-checkpoints": 3,
            "KV_hostdev-ledger": 3,
            "KV_hostdev-inventory": 3,
        }
        await asyncio.gather(*(unprepared_eventually(node.plugin, c) for c in claims))
        assert_nothing_left(config, *await node_state(members[2].url, config.node))


BUCKETS = (
    (subjects.CHECKPOINT_BUCKET, Checkpoint),
    (subjects.LEDGER_BUCKET, Hold),
    (subjects.INVENTORY_BUCKET, Device),
)


async def _create_buckets(url: str, replicas: int) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=20)
        for bucket, kind in BUCKETS:
            await NatsKv.open(js, bucket, kind, replicas)

        async def led() -> bool:
            infos = [await js.stream_info(f"KV_{bucket}") for bucket, _ in BUCKETS]
            return all(i.cluster is not None and i.cluster.leader for i in infos)

        await nats_topology.eventually("the buckets have no leaders", led, 30, step=0.2)
    finally:
        await nc.close()


async def _bucket_replicas(url: str) -> dict[str, int]:
    """Each bucket's replicas, once the cluster answers: right after a member was killed
    the stream info requests may time out while its streams elect leaders."""
    found: dict[str, int] = {}

    async def answered() -> bool:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            for name in ("KV_hostdev-checkpoints", "KV_hostdev-ledger", "KV_hostdev-inventory"):
                found[name] = (await js.stream_info(name)).config.num_replicas or 1
            return True
        except nats.errors.TimeoutError:
            return False
        finally:
            await nc.close()

    await nats_topology.eventually("the buckets' stream info not answered", answered, 30.0)
    return found


async def test_single_server_restarted_mid_prepare_converges_to_one_checkpoint_spec_and_hold(
    node_config: NodeConfig,
    cluster: Cluster,
    kubelet: KubeletSimulator,
    servers: list[ConfiguredServer],
    short_dir: Path,
) -> None:
    """The node's only nats-server is SIGKILLed the moment the preparer asks the allocator
    for the device, and started again on the same port and store. The kubelet's retried
    prepare converges: one checkpoint, one spec, one hold; unprepare leaves nothing."""
    server = nats_topology.single(short_dir / "nats")
    servers.append(server)
    server.start()
    config = dataclasses.replace(node_config, nats_url=server.url)
    claim = (await _claims(cluster, 1, "restart"))[0]
    async with started_node(config, kubelet) as node:
        spy = await nats.connect(server.url, max_reconnect_attempts=0)
        reserving = asyncio.Event()

        async def on_reserve(msg: object) -> None:
            reserving.set()

        await spy.subscribe(subjects.alloc_reserve(config.node), cb=on_reserve)
        await spy.flush()
        first = asyncio.ensure_future(node.plugin.prepare([claim], timeout=5))
        await asyncio.wait_for(reserving.wait(), 10)
        server.kill()
        with contextlib.suppress(PluginCallError):
            await first  # answered or failed: the kubelet retries either way
        await spy.close()
        server.start()
        told = {claim.uid: await prepared_eventually(node.plugin, claim)}
        checkpoints, holds = await node_state(server.url, config.node, 1)
        assert_exactly_prepared(config, told, checkpoints, holds)
        assert holds["udmabuf"].holders == (claim.uid,)
        await unprepared_eventually(node.plugin, claim)
        assert_nothing_left(config, *await node_state(server.url, config.node))


@pytest.mark.timeout(120)  # the hub's source takes up to ~30 s to retry its consumer
async def test_leaf_without_its_hub_prepares_and_unprepares_and_catches_up_when_it_returns(
    node_config: NodeConfig,
    cluster: Cluster,
    kubelet: KubeletSimulator,
    servers: list[ConfiguredServer],
    short_dir: Path,
) -> None:
    """The node's services use the leaf's own JetStream domain. With the hub SIGKILLed the
    node prepares and unprepares as before; when the hub returns the leaf reconnects, the
    hub reaches the node's subjects again, and a hub stream sourcing the node's checkpoints
    receives what was written while it was away."""
    hub, leaf = nats_topology.hub_and_leaf(short_dir / "nats", LEAF_DOMAIN)
    servers.extend([hub, leaf])
    hub.start()
    leaf.start()
    await nats_topology.jetstream_ready(leaf.url)
    await nats_topology.jetstream_ready(hub.url)
    config = dataclasses.replace(node_config, nats_url=leaf.url)
    before, during = await _claims(cluster, 2, "leaf")
    async with started_node(config, kubelet) as node:
        await _source_checkpoints_at_hub(hub.url)
        await prepared_eventually(node.plugin, before)
        await _hub_reaches_node(hub.url, config.node)
        await _hub_copy_holds(hub.url, 1)

        hub.kill()
        told = {during.uid: await prepared_eventually(node.plugin, during)}
        await unprepared_eventually(node.plugin, before)
        checkpoints, holds = await node_state(leaf.url, config.node, 1)
        assert_exactly_prepared(config, told, checkpoints, holds)

        hub.start()
        await _hub_reaches_node(hub.url, config.node)
        # prepare(before), prepare(during), unprepare(before): at least three writes more.
        await _hub_copy_holds(hub.url, 3)
        await unprepared_eventually(node.plugin, during)
        assert_nothing_left(config, *await node_state(leaf.url, config.node))


HUB_COPY = "hub-checkpoints"


async def _source_checkpoints_at_hub(hub_url: str) -> None:
    """A hub stream sourcing the leaf domain's checkpoint stream, as a cluster-wide view would."""
    nc = await nats.connect(hub_url)
    try:
        js = nc.jetstream()
        await js.add_stream(
            StreamConfig(
                name=HUB_COPY,
                subjects=[],
                sources=[
                    StreamSource(
                        name="KV_hostdev-checkpoints",
                        external=ExternalStream(api=f"$JS.{LEAF_DOMAIN}.API"),
                    )
                ],
            )
        )
    finally:
        await nc.close()


async def _hub_copy_holds(hub_url: str, at_least: int) -> None:
    nc = await nats.connect(hub_url)
    try:
        js = nc.jetstream()

        async def copied() -> bool:
            return ((await js.stream_info(HUB_COPY)).state.messages or 0) >= at_least

        await nats_topology.eventually(f"the hub copy never had {at_least} entries", copied, 60)
    finally:
        await nc.close()


async def _hub_reaches_node(hub_url: str, node: str) -> None:
    """A client of the hub gets the node's inventory: the leaf carries the subjects again."""
    nc = await nats.connect(hub_url)
    try:
        bus = NatsBus(nc)

        async def answered() -> bool:
            try:
                snapshot = await bus.request(
                    subjects.inventory_get(node), GetInventory(), InventorySnapshot, 1.0
                )
            except BusError:
                return False
            return bool(snapshot.devices)

        await nats_topology.eventually("the hub never reached the node", answered, 20)
    finally:
        await nc.close()
