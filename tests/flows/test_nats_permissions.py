"""Each service logs in to its node's NATS leaf as its own user and may publish and subscribe only
what it does: the users, permissions, Secret keys and URLs exactly as k8s/base ships them, on a
real nats-server, with the five services running as those users."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from nats.js.api import KeyValueConfig, StorageType

from hostdev_bus import NatsKv, inbox_prefix
from hostdev_events import subjects
from hostdev_events.alloc import Hold
from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.fakehost import DEMO_HOST_PATHS
from hostdev_testing.kubelet import KubeletSimulator
from hostdev_testing.kubelet_dp import DevicePluginKubelet
from hostdev_testing.services import NodeConfig, Services, running_services
from tests.deploy.nats_permissions import (
    BASE,
    SERVICES,
    LeafServer,
    authorization_block,
    leaf_config,
    leaf_server,
    probe,
    refuses_login,
    service_password_key,
    service_url,
)

NODE = "node-1.example"
UDMA = "intel.com/udma"


@pytest.fixture
def leaf(tmp_path: Path) -> Iterator[LeafServer]:
    """A nats-server with the leaf's shipped users (and a test harness user)."""
    with leaf_server(tmp_path / "leaf") as server:
        yield server


@contextlib.asynccontextmanager
async def _as_their_users(leaf: LeafServer, node_config: NodeConfig) -> AsyncIterator[Services]:
    """The node's services, each connecting with the URL its DaemonSet gives it."""
    config = dataclasses.replace(node_config, nats_url=leaf.harness_url)
    async with running_services(config) as services:
        for service in SERVICES:
            services.per_service_env[service] = {"HOSTDEV_NATS_URL": leaf.url(service)}
        yield services


def _cdi_files(config: NodeConfig) -> list[Path]:
    return sorted(p for p in config.cdi_root.rglob("*") if p.is_file())


# --- the wiring -----------------------------------------------------------------------------------


def test_each_service_logs_in_as_its_own_user_with_its_own_secret_key() -> None:
    """The leaf defines exactly the five services' users, and each DaemonSet's URL names its own
    user, its own Secret key's password and the leaf Service the shared settings name."""
    users = {
        line.split(":", 1)[1].strip()
        for line in authorization_block(leaf_config()).splitlines()
        if line.strip().startswith("user:")
    }
    assert users == set(SERVICES)
    passwords = {service: f"pw-of-{service}" for service in SERVICES}
    (shared,) = [
        line.partition("=")[2]
        for line in (BASE / "hostdev.env").read_text().splitlines()
        if line.startswith("HOSTDEV_NATS_URL=")
    ]
    for service in SERVICES:
        assert service_password_key(service) == service
        url = urlsplit(service_url(service, passwords))
        assert (url.username, url.password) == (service, passwords[service])
        assert (url.scheme, url.hostname, url.port) == (
            urlsplit(shared).scheme,
            urlsplit(shared).hostname,
            urlsplit(shared).port,
        )


async def test_a_login_without_a_service_password_is_refused(leaf: LeafServer) -> None:
    """Neither an anonymous connection nor a service name with a wrong password gets in."""
    assert await refuses_login(leaf.anonymous_url)
    wrong = urlsplit(leaf.url("gateway"))._replace(netloc=f"gateway:wrong@{leaf.address}")
    assert await refuses_login(wrong.geturl())
    assert not await refuses_login(leaf.url("gateway"))


# --- the services work as their users -------------------------------------------------------------


async def test_prepare_and_unprepare_work_with_every_service_as_its_own_user(
    leaf: LeafServer, node_config: NodeConfig, kubelet: KubeletSimulator, cluster: Cluster
) -> None:
    """A claim is prepared (CDI spec written) and unprepared (spec removed) through the kubelet's
    DRA socket, and the server refused nothing any service did."""
    async with _as_their_users(leaf, node_config) as services:
        await services.start()
        plugin = await kubelet.wait_for_driver(node_config.driver, timeout=10)
        claim = await cluster.allocated_claim(
            "default", "render", [Allocated("gpu", "dev-dri-renderd128")]
        )
        prepared = await plugin.prepare([claim])
        assert prepared.claims[claim.uid].error == ""
        assert _cdi_files(node_config)
        unprepared = await plugin.unprepare([claim])
        assert unprepared.claims[claim.uid].error == ""
        assert _cdi_files(node_config) == []
    leaf.stop()
    assert leaf.violations() == []


async def test_device_plugin_allocate_and_release_work_with_every_service_as_its_own_user(
    leaf: LeafServer,
    node_config: NodeConfig,
    dp_kubelet: DevicePluginKubelet,
    cluster: Cluster,
) -> None:
    """GetPreferredAllocation, Allocate, and the release of an allocation no pod uses work, and
    the server refused nothing any service did."""
    body = {
        "hostPaths": list(DEMO_HOST_PATHS),
        "resources": [{"name": UDMA, "devices": ["udmabuf"]}],
    }
    node_config.devices_config.write_text(json.dumps(body))
    async with _as_their_users(leaf, node_config) as services:
        await services.start()
        await dp_kubelet.wait_registered(UDMA, timeout=10)
        await dp_kubelet.wait_for(UDMA, lambda devices: [d.id for d in devices] == ["udmabuf"])
        assert await dp_kubelet.preferred_allocation(UDMA, ["udmabuf"], [], 1) == ["udmabuf"]
        allocated = await dp_kubelet.allocate(UDMA, ["udmabuf"])
        assert allocated.cdi_devices
        # No pod holds it: two reconcile passes in a row release it.
        await services.reconcile_pod_resources()
        assert await services.reconcile_pod_resources() == {UDMA: ("udmabuf",)}
        assert _cdi_files(node_config) == []
    leaf.stop()
    assert leaf.violations() == []


# --- and nothing else -----------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
async def test_only_the_preparer_may_send_cdi_commands(leaf: LeafServer, service: str) -> None:
    """Publishing cdi.write or cdi.remove is refused to every user but the preparer's."""
    async with probe(leaf.url(service)) as client:
        allowed = service == "preparer"
        assert await client.can_publish(subjects.cdi_write(NODE)) is allowed
        assert await client.can_publish(subjects.cdi_remove(NODE)) is allowed


async def test_gateway_may_ask_the_preparer_but_not_the_allocator_or_the_cdi_writer(
    leaf: LeafServer,
) -> None:
    """The gateway's user publishes claims.prepare but not alloc.reserve, alloc.release or
    cdi.write."""
    async with probe(leaf.url("gateway")) as gateway:
        assert await gateway.can_publish(subjects.claims_prepare(NODE))
        assert not await gateway.can_publish(subjects.alloc_reserve(NODE))
        assert not await gateway.can_publish(subjects.alloc_release(NODE))
        assert not await gateway.can_publish(subjects.cdi_write(NODE))


async def test_cdi_writer_cannot_reserve_devices_or_read_the_ledger(leaf: LeafServer) -> None:
    """With a ledger entry written by the allocator's user, the cdi-writer's user can neither
    reserve devices nor open, read or watch the ledger bucket, while it does read checkpoints."""
    bucket = subjects.LEDGER_BUCKET
    async with probe(leaf.url("allocator")) as allocator:
        ledger = await allocator.nc.jetstream().create_key_value(
            KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE)
        )
        await ledger.create(subjects.device_key(NODE, "udmabuf"), b"{}")
    async with probe(leaf.url("cdi-writer")) as writer:
        assert not await writer.can_publish(subjects.alloc_reserve(NODE))
        js = writer.nc.jetstream()
        assert await writer.refuses(js.key_value(bucket), f"$JS.API.STREAM.INFO.KV_{bucket}")
        assert not await writer.can_publish(f"$JS.API.STREAM.MSG.GET.KV_{bucket}")
        assert not await writer.can_publish(f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.x.y")
        assert not await writer.can_publish(f"$JS.API.CONSUMER.CREATE.KV_{bucket}")
        checkpoints = subjects.CHECKPOINT_BUCKET
        assert await writer.can_publish(f"$JS.API.STREAM.MSG.GET.KV_{checkpoints}")


async def test_preparer_reads_the_ledger_but_cannot_write_it(leaf: LeafServer) -> None:
    """The preparer's user lists and reads ledger entries (to find holds no checkpoint stands
    behind) but cannot write one: holds change only through the allocator."""
    bucket = subjects.LEDGER_BUCKET
    key = subjects.device_key(NODE, "udmabuf")
    async with probe(leaf.url("allocator")) as allocator:
        ledger = await allocator.nc.jetstream().create_key_value(
            KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE)
        )
        await ledger.create(key, b"{}")
    async with probe(leaf.url("preparer")) as preparer:
        kv = await NatsKv.open(preparer.nc.jetstream(), bucket, Hold)
        assert await kv.keys(subjects.device_key_prefix(NODE)) == [key]
        assert await kv.get(key) is not None
        assert not await preparer.can_publish(f"$KV.{bucket}.{key}")


async def test_discovery_cannot_write_the_checkpoint_bucket(leaf: LeafServer) -> None:
    """The discovery user writes inventory keys but no checkpoint key, and cannot even open the
    checkpoint bucket."""
    async with probe(leaf.url("discovery")) as discovery:
        bucket = subjects.CHECKPOINT_BUCKET
        key = subjects.checkpoint_key(NODE, "3f1c2a9e-claim")
        assert not await discovery.can_publish(f"$KV.{bucket}.{key}")
        js = discovery.nc.jetstream()
        assert await discovery.refuses(js.key_value(bucket), f"$JS.API.STREAM.INFO.KV_{bucket}")
        inventory = subjects.INVENTORY_BUCKET
        assert await discovery.can_publish(
            f"$KV.{inventory}.{subjects.device_key(NODE, 'udmabuf')}"
        )


async def test_allocator_cannot_take_prepare_commands(leaf: LeafServer) -> None:
    """The allocator's user may not subscribe to claims.prepare, in the preparer's queue group or
    outside any, while it takes alloc.reserve in its own group."""
    async with probe(leaf.url("allocator")) as allocator:
        prepare = subjects.claims_prepare(NODE)
        assert not await allocator.can_subscribe(prepare, subjects.queue_group("preparer"))
        assert not await allocator.can_subscribe(prepare)
        reserve = subjects.alloc_reserve(NODE)
        assert await allocator.can_subscribe(reserve, subjects.queue_group("allocator"))


async def test_commands_are_taken_only_in_the_services_own_queue_group(leaf: LeafServer) -> None:
    """The preparer's user takes claims.prepare in preparer-workers only, not as a plain
    subscriber that would see every command, and follows inventory.changed without a group."""
    async with probe(leaf.url("preparer")) as preparer:
        prepare = subjects.claims_prepare(NODE)
        assert await preparer.can_subscribe(prepare, subjects.queue_group("preparer"))
        assert not await preparer.can_subscribe(prepare)
        assert not await preparer.can_subscribe(prepare, "other-workers")
        assert await preparer.can_subscribe(subjects.inventory_changed(NODE))


@pytest.mark.parametrize("service", SERVICES)
async def test_no_service_may_publish_into_reply_inboxes(leaf: LeafServer, service: str) -> None:
    """Replies go only to requests received (allow_responses): publishing to an inbox of the
    service's choosing, or to a subject outside hostdev.v1, is refused."""
    async with probe(leaf.url(service)) as client:
        assert not await client.can_publish("_INBOX.someone-else.1")
        assert not await client.can_publish("hostdev.v2.node.anything")
        assert await client.can_publish(subjects.service_ready(NODE))


@pytest.mark.parametrize("service", SERVICES)
async def test_each_service_reads_only_its_own_replies(leaf: LeafServer, service: str) -> None:
    """Every service has its own inbox prefix: it may listen there and nowhere else, so no
    service sees replies (ledger values, checkpoints) meant for another."""
    async with probe(leaf.url(service)) as client:
        assert await client.can_subscribe(f"{inbox_prefix(service)}.>")
        others = [s for s in SERVICES if s != service]
        for other in others:
            assert not await client.can_subscribe(f"{inbox_prefix(other)}.>")
        assert not await client.can_subscribe("_INBOX.>")
