"""Claims the kubelet forgets: the preparer undoes what no claim stands behind, after a grace period.

The five real services, a real nats-server, the fake kernel under the acceptance host and the
API emulator over HTTP; the preparer runs on a ManualClock so its 300 s grace period passes
when the test says so. Claims are deleted (or replaced) in the API without the kubelet ever
calling NodeUnprepareResources.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import pytest_asyncio

from hostdev_bus import NatsBus, NatsKv
from hostdev_events import dp, subjects
from hostdev_events.alloc import DeviceWant, Hold, Reserved, ReserveDevices
from hostdev_events.state import Checkpoint, ClaimStep
from hostdev_testing.apiserver import ApiServer
from hostdev_testing.clock import ManualClock
from hostdev_testing.cluster import RESOURCE_API, Allocated, Claim, Cluster
from hostdev_testing.fakehost import FakeHost
from hostdev_testing.fakesysfs import SampleHost, snapshot
from hostdev_testing.kubelet import KubeletSimulator, RegisteredPlugin
from hostdev_testing.schemas import schemas_dir
from hostdev_testing.services import NodeConfig, Services

NVME = "pci-0000-01-00-0"
GRACE = 300.0  # the settings' defaults: the clock is moved, nothing is shortened
STUCK = 180.0
SCAN = 30.0

CONFIG: dict[str, Any] = {
    # The NVMe and its IOMMU group sibling are both offered, so the group may move.
    "pci": [{"vendor": "144d", "device": "a808"}, {"address": "0000:01:00.1"}],
    "hostPaths": [{"path": "/dev/kvm", "name": "kvm", "shared": True}],
}


@pytest.fixture
def fake_host(sample: SampleHost) -> FakeHost:
    """This module's host tree is the acceptance host."""
    return FakeHost(sample.root)


@pytest.fixture
def history() -> int:
    """Events the API emulator keeps for watches to resume from."""
    return 10_000


@pytest_asyncio.fixture
async def api(history: int) -> AsyncIterator[ApiServer]:
    """The API emulator, kept at hand so a test can take it down and bring it back."""
    server = ApiServer(schemas_dir=schemas_dir(), history=history)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def api_url(api: ApiServer) -> str:
    return api.url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def metrics_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _prepare_preparer(services: Services, clock: ManualClock, metrics_port: int) -> None:
    services.preparer_clock = clock
    services.per_service_env["preparer"] = {"HOSTDEV_HTTP_PORT": str(metrics_port)}


async def _plugin(
    services: Services, kubelet: KubeletSimulator, config: NodeConfig
) -> RegisteredPlugin:
    config.devices_config.write_text(json.dumps(CONFIG))
    await services.start()
    return await kubelet.wait_for_driver(config.driver, timeout=10)


async def _checkpoint(services: Services, uid: str) -> Checkpoint | None:
    store = await NatsKv.open(services.nc.jetstream(), subjects.CHECKPOINT_BUCKET, Checkpoint)
    found = await store.get(subjects.checkpoint_key(services.config.node, uid))
    return None if found is None else found[0]


async def _holders(services: Services, entry: str) -> tuple[str, ...]:
    ledger = await NatsKv.open(services.nc.jetstream(), subjects.LEDGER_BUCKET, Hold)
    found = await ledger.get(subjects.device_key(services.config.node, entry))
    return () if found is None else found[0].holders


def _specs(config: NodeConfig, uid: str) -> list[Path]:
    return list(config.cdi_root.glob(f"*{uid}*"))


def _driver(sample: SampleHost, bdf: str) -> str:
    link = sample.root / f"sys/bus/pci/devices/{bdf}/driver"
    return link.resolve().name if link.exists() else ""


async def _advance_until(
    clock: ManualClock,
    condition: Callable[[], Awaitable[bool]],
    *,
    step: float = SCAN,
    sleepers: int = 1,
    limit: float = 4 * GRACE,
) -> float:
    """Move the clock a scan period at a time, each once the preparer has finished with the
    last, until `condition` holds; returns how much time had to pass."""
    passed = 0.0
    async with asyncio.timeout(30):
        while not await condition():
            assert passed < limit, f"still not done after {passed} s on the clock"
            await clock.sleepers(sleepers)
            clock.advance(step)
            passed += step
    return passed


async def _let_time_pass(clock: ManualClock, seconds: float, *, sleepers: int = 1) -> None:
    """Move the clock by `seconds`, a scan period at a time, letting every check run."""
    async with asyncio.timeout(30):
        for _ in range(int(seconds // SCAN)):
            await clock.sleepers(sleepers)
            clock.advance(SCAN)
        await clock.sleepers(sleepers)


async def _cleaned(port: int) -> dict[str, float]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        text = await response.text()
    counts = {}
    for line in text.splitlines():
        if line.startswith("hostdev_orphans_cleaned_total{"):
            labels, value = line.rsplit(" ", 1)
            counts[labels.split('reason="')[1].rstrip('"}')] = float(value)
    return counts


def _warnings(caplog: pytest.LogCaptureFixture, claim: Claim) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "hostdev_preparer.orphans"
        and r.levelno == logging.WARNING
        and vars(r).get("dra.claim.uid") == claim.uid
    ]


async def _delete(cluster: Cluster, claim: Claim) -> None:
    path = f"{RESOURCE_API}/namespaces/{claim.namespace}/resourceclaims/{claim.name}"
    await cluster.call("DELETE", path)


async def test_claim_deleted_without_unprepare_is_undone_after_the_grace_period(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
    clock: ManualClock,
    metrics_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A vfio claim deleted from the API while prepared: nothing happens within the grace
    period; after it, the NVMe's group is back on its drivers (the tree exactly as before),
    the spec, the hold and the checkpoint are gone, and it is logged and counted. A claim
    that still exists keeps everything."""
    _prepare_preparer(services, clock, metrics_port)
    plugin = await _plugin(services, kubelet, node_config)
    before = snapshot(sample.root)
    gone = await cluster.allocated_claim(
        "vms", "nvme", [Allocated("nvme", NVME)], namespace_create=True
    )
    kept = await cluster.allocated_claim("vms", "kvm", [Allocated("kvm", "kvm")])
    assert (await plugin.prepare([gone, kept])).kubelet_failure is None
    assert _driver(sample, sample.nvme) == "vfio-pci"
    assert _specs(node_config, gone.uid)

    await _delete(cluster, gone)
    await _let_time_pass(clock, GRACE - 2 * SCAN)
    assert await _checkpoint(services, gone.uid) is not None
    assert _driver(sample, sample.nvme) == "vfio-pci"

    async def undone() -> bool:
        return await _checkpoint(services, gone.uid) is None

    await _advance_until(clock, undone)
    assert snapshot(sample.root) == before
    assert not _specs(node_config, gone.uid)
    assert await _holders(services, NVME) == ()
    assert await _holders(services, "kvm") == (kept.uid,)
    assert _specs(node_config, kept.uid)
    kept_record = await _checkpoint(services, kept.uid)
    assert kept_record is not None
    assert kept_record.step == ClaimStep.COMPLETED
    assert await _cleaned(metrics_port) == {"claim-deleted": 1.0}
    (warning,) = _warnings(caplog, gone)
    fields = vars(warning)
    assert (fields["dra.claim.namespace"], fields["dra.claim.name"]) == ("vms", "nvme")
    assert fields["reason"] == "claim-deleted"
    assert not _warnings(caplog, kept)


async def test_claim_recreated_under_its_name_is_told_apart_by_uid(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    clock: ManualClock,
    metrics_port: int,
) -> None:
    """A claim deleted and created again with the same name has a new UID: the old UID's
    checkpoint is still cleaned; a claim whose allocation was taken away is cleaned too."""
    _prepare_preparer(services, clock, metrics_port)
    plugin = await _plugin(services, kubelet, node_config)
    old = await cluster.allocated_claim("default", "kvm", [Allocated("kvm", "kvm")])
    moved = await cluster.allocated_claim("default", "moved", [Allocated("kvm", "kvm")])
    assert (await plugin.prepare([old, moved])).kubelet_failure is None

    await _delete(cluster, old)
    new = await cluster.allocated_claim("default", "kvm", [Allocated("kvm", "kvm")])
    assert new.uid != old.uid
    path = f"{RESOURCE_API}/namespaces/default/resourceclaims/moved"
    deallocated = await cluster.call("GET", path)
    deallocated["status"] = {}
    await cluster.call("PUT", f"{path}/status", deallocated)

    async def both_undone() -> bool:
        return (
            await _checkpoint(services, old.uid) is None
            and await _checkpoint(services, moved.uid) is None
        )

    passed = await _advance_until(clock, both_undone)
    assert passed >= GRACE
    assert await _holders(services, "kvm") == ()
    assert not _specs(node_config, old.uid)
    assert await _cleaned(metrics_port) == {"claim-replaced": 1.0, "not-allocated-here": 1.0}


async def test_prepare_left_unfinished_by_a_crash_is_rolled_back_after_the_retry_window(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
    clock: ManualClock,
    metrics_port: int,
) -> None:
    """A preparer that died after binding the NVMe's group to vfio-pci, writing the spec and
    reserving, but before recording the outcome, leaves a `preparing` record nobody retries:
    it is rolled back once the kubelet's retry window has passed, and the tree is as before.

    The crash is reproduced at that exact point: the prepare runs, then its record is put
    back to what it was just before the final write (step preparing, no outcome).
    """
    _prepare_preparer(services, clock, metrics_port)
    plugin = await _plugin(services, kubelet, node_config)
    before = snapshot(sample.root)
    claim = await cluster.allocated_claim(
        "vms", "stuck", [Allocated("nvme", NVME)], namespace_create=True
    )
    assert (await plugin.prepare([claim])).kubelet_failure is None
    store = await NatsKv.open(services.nc.jetstream(), subjects.CHECKPOINT_BUCKET, Checkpoint)
    key = subjects.checkpoint_key(node_config.node, claim.uid)
    found = await store.get(key)
    assert found is not None
    unfinished = msgspec.structs.replace(
        found[0], step=ClaimStep.PREPARING, outcome=None, boot_id=""
    )
    await store.update(key, unfinished, last=found[1])
    await services.stop("preparer")  # the crash: a preparer starts afresh on what it left
    await services.start("preparer")

    await _let_time_pass(clock, STUCK - 2 * SCAN)
    assert await _checkpoint(services, claim.uid) is not None
    assert _driver(sample, sample.nvme) == "vfio-pci"

    async def rolled_back() -> bool:
        return await _checkpoint(services, claim.uid) is None

    await _advance_until(clock, rolled_back)
    assert snapshot(sample.root) == before
    assert not _specs(node_config, claim.uid)
    assert await _holders(services, NVME) == ()
    assert await _cleaned(metrics_port) == {"stuck-preparing": 1.0}


@pytest.mark.parametrize("history", [10_000, 40], ids=["resumed", "compacted"])
async def test_nothing_is_undone_while_the_api_server_is_down(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
    api: ApiServer,
    clock: ManualClock,
    metrics_port: int,
    history: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the API server unreachable, a claim deleted just before stays prepared however
    long it stays down; once it is back, the watch resumes from where it was (or lists again
    when that point was compacted away) and the claim is cleaned."""
    caplog.set_level(logging.INFO, logger="hostdev_preparer.claimwatch")
    _prepare_preparer(services, clock, metrics_port)
    plugin = await _plugin(services, kubelet, node_config)
    before = snapshot(sample.root)
    claim = await cluster.allocated_claim(
        "vms", "nvme", [Allocated("nvme", NVME)], namespace_create=True
    )
    assert (await plugin.prepare([claim])).kubelet_failure is None
    await _delete(cluster, claim)
    await api.go_down()
    if history < 10_000:
        # The outage outlasts the history a watch could resume from.
        for n in range(history + 1):
            api.create("namespaces", {"metadata": {"name": f"busy-{n}"}})

    # Two sleepers while down: the orphan checks, and the watch waiting to retry.
    await _let_time_pass(clock, 3 * GRACE, sleepers=2)
    record = await _checkpoint(services, claim.uid)
    assert record is not None
    assert record.step == ClaimStep.COMPLETED
    assert _driver(sample, sample.nvme) == "vfio-pci"
    assert await _holders(services, NVME) == (claim.uid,)
    assert await _cleaned(metrics_port) == {}

    await api.come_back()

    async def undone() -> bool:
        return await _checkpoint(services, claim.uid) is None

    await _advance_until(clock, undone)
    assert snapshot(sample.root) == before
    assert await _cleaned(metrics_port) == {"claim-deleted": 1.0}
    relisted = [r for r in caplog.records if r.getMessage().startswith("claim watch expired")]
    assert bool(relisted) == (history < 10_000)


async def test_hold_whose_owner_has_no_checkpoint_is_released_but_device_plugin_holds_stay(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    clock: ManualClock,
    metrics_port: int,
) -> None:
    """A ledger hold left by an owner with no checkpoint (a claim whose record is gone) is
    released after the grace period; a device-plugin owner's hold is the gateway's to judge
    and stays."""
    _prepare_preparer(services, clock, metrics_port)
    await _plugin(services, kubelet, node_config)
    bus = NatsBus(services.nc)
    node = node_config.node
    lost = str(uuid.uuid4())
    plugin_owner = dp.owner("hostdev.k8s.io/kvm", "kvm-0")
    for owner in (lost, plugin_owner):
        want = DeviceWant(device="kvm", shareable=True)
        await bus.request(
            subjects.alloc_reserve(node), ReserveDevices(owner=owner, devices=(want,)), Reserved, 5
        )
    assert set(await _holders(services, "kvm")) == {lost, plugin_owner}

    async def released() -> bool:
        return await _holders(services, "kvm") == (plugin_owner,)

    passed = await _advance_until(clock, released)
    assert passed >= GRACE
    assert await _cleaned(metrics_port) == {"hold-without-checkpoint": 1.0}


async def test_host_path_prepare_cut_short_before_its_record_loses_its_hold_and_spec(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    clock: ManualClock,
    metrics_port: int,
) -> None:
    """A claim with no host action is reserved and its spec written with its one record:
    cut short before the record landed (the record deleted here to stand for the crash), its hold and its spec
    are both taken away after the grace period, though the kubelet never unprepares it."""
    _prepare_preparer(services, clock, metrics_port)
    plugin = await _plugin(services, kubelet, node_config)
    claim = await cluster.allocated_claim("default", "cut", [Allocated("kvm", "kvm")])
    assert (await plugin.prepare([claim])).claims[claim.uid].error == ""
    store = await NatsKv.open(services.nc.jetstream(), subjects.CHECKPOINT_BUCKET, Checkpoint)
    await store.delete(subjects.checkpoint_key(node_config.node, claim.uid))
    await services.stop("preparer")  # the crash: a preparer starts afresh on what it left
    await services.start("preparer")
    assert await _holders(services, "kvm") == (claim.uid,)
    assert _specs(node_config, claim.uid)

    async def cleaned() -> bool:
        return await _holders(services, "kvm") == () and not _specs(node_config, claim.uid)

    passed = await _advance_until(clock, cleaned)
    assert passed >= GRACE
    assert await _cleaned(metrics_port) == {"hold-without-checkpoint": 1.0}
