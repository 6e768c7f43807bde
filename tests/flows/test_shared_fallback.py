"""Shared devices on an API server with DRAConsumableCapacity off: it drops
`allowMultipleAllocations` on write, so discovery publishes numbered copies instead, and
the rest of the driver prepares a claim for a copy as the shared device it stands for."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from hostdev_testing.apiserver import ApiServer
from hostdev_testing.apiserver.gates import CONSUMABLE_CAPACITY
from hostdev_testing.apiserver.schema import OpenApi
from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.kubelet import KubeletSimulator
from hostdev_testing.schemas import schemas_dir, validate_cdi
from hostdev_testing.services import NodeConfig, Services

SHARED = ("kvm", "vhost-net", "tun", "x11")
EXCLUSIVE = {"dev-dri-renderd128", "udmabuf"}
FALLBACK_LOGGER = "hostdev_discovery.fallback"
ON = "the API server drops allowMultipleAllocations"
OFF = "the API server keeps allowMultipleAllocations again"


@pytest_asyncio.fixture
async def apiserver() -> AsyncIterator[ApiServer]:
    """The API emulator as a cluster with the consumable-capacity feature gate off."""
    server = ApiServer(schemas_dir=schemas_dir(), feature_gates={CONSUMABLE_CAPACITY: False})
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def api_url(apiserver: ApiServer) -> str:
    """Every fixture of this module talks to that server."""
    return apiserver.url


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _discovery_env(services: Services, **settings: str) -> int:
    """Give discovery a metrics port and `settings` (HOSTDEV_ names); returns the port."""
    port = _free_port()
    env = {"HOSTDEV_HTTP_PORT": str(port)}
    env |= {f"HOSTDEV_{name.upper()}": value for name, value in settings.items()}
    services.per_service_env["discovery"] = env
    return port


async def _metrics(port: int) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        return await response.text()


def _devices(slices: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for s in slices for d in s["spec"].get("devices") or ()}


def _copies(name: str, count: int) -> set[str]:
    return {f"{name}-{i}" for i in range(count)}


def _replaced(gone: str) -> Callable[[list[dict[str, Any]]], bool]:
    """A wait condition: slices exist again, and the deleted one is not among them."""
    return lambda now: bool(now) and all(s["metadata"]["name"] != gone for s in now)


def _messages(caplog: pytest.LogCaptureFixture, level: int, start: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == FALLBACK_LOGGER and r.levelno == level and r.getMessage().startswith(start)
    ]


async def test_feature_off_publishes_numbered_copies_logged_once_and_in_the_metric(
    services: Services, cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """kvm, vhost-net, tun and x11 become 16 exclusive copies each; the slices validate; the
    warning comes once although the slices are written again; the gauge shows the fallback."""
    caplog.set_level(logging.WARNING, logger=FALLBACK_LOGGER)
    port = _discovery_env(services)
    await services.start("discovery")
    slices = await cluster.slices()
    devices = _devices(slices)
    assert set(devices) == {c for name in SHARED for c in _copies(name, 16)} | EXCLUSIVE
    assert not any("allowMultipleAllocations" in d for d in devices.values())
    assert devices["kvm-15"]["attributes"]["path"] == {"string": "/dev/kvm"}
    validator = OpenApi.load(schemas_dir()).validator("io.k8s.api.resource.v1.ResourceSlice")
    for item in slices:
        assert list(validator.iter_errors(item)) == []
    for _ in range(2):  # the kubelet wipes the slices; discovery writes them again
        first = slices[0]["metadata"]["name"]
        await cluster.delete_slice(first)
        slices = await cluster.wait_for_slices(_replaced(first))
        assert "kvm-0" in _devices(slices)
    text = await _metrics(port)
    assert "hostdev_shared_fallback_active 1.0" in text
    assert "hostdev_shared_devices_exclusive 0.0" in text
    assert 'hostdev_shared_probes_total{result="dropped"} 1.0' in text
    assert len(_messages(caplog, logging.WARNING, ON)) == 1


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
async def test_second_claim_on_kvm_prepares_while_the_first_holds_another_copy(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    version: str,
) -> None:
    """Two claims allocated kvm-0 and kvm-1 both prepare; each spec hands over /dev/kvm and
    the kubelet hears the copy's name; releasing one leaves the other in place."""
    await services.start()
    plugin = await kubelet.wait_for_driver(node_config.driver, timeout=10)
    assert {"kvm-0", "kvm-1"} <= set(_devices(await cluster.slices()))
    first = await cluster.allocated_claim("default", "vm-a", [Allocated("kvm", "kvm-0")])
    second = await cluster.allocated_claim("default", "vm-b", [Allocated("kvm", "kvm-1")])
    held = await plugin.prepare([first], version=version)  # type: ignore[arg-type]
    assert held.claims[first.uid].error == ""
    prepared = await plugin.prepare([second], version=version)  # type: ignore[arg-type]
    result = prepared.claims[second.uid]
    assert result.error == ""
    (device,) = result.devices
    assert device.device_name == "kvm-1"
    (cdi_id,) = device.cdi_device_ids
    assert cdi_id == f"k8s.{node_config.driver}/device={second.uid}-kvm-1"
    for claim in (first, second):
        (spec_file,) = node_config.cdi_root.glob(f"k8s.{node_config.driver}-device_*{claim.uid}*")
        spec = json.loads(spec_file.read_bytes())
        validate_cdi(spec)
        (node,) = spec["devices"][0]["containerEdits"]["deviceNodes"]
        assert (node["path"], node["hostPath"]) == ("/dev/kvm", str(node_config.root / "dev/kvm"))
    assert (await plugin.unprepare([first], version=version)).kubelet_failure is None  # type: ignore[arg-type]
    (left,) = node_config.cdi_root.glob(f"k8s.{node_config.driver}-device_*")
    assert second.uid in left.name
    again = await plugin.prepare([second], version=version)  # type: ignore[arg-type]
    assert again.claims[second.uid].error == ""
    assert (await plugin.unprepare([second], version=version)).kubelet_failure is None  # type: ignore[arg-type]
    assert list(node_config.cdi_root.glob(f"k8s.{node_config.driver}-device_*")) == []


async def test_copies_are_withdrawn_once_the_server_keeps_the_field_again(
    services: Services, cluster: Cluster, apiserver: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    """After the gate is turned on (an upgrade), the periodic probe sees the field kept and
    discovery publishes kvm once, shared, with no copies left."""
    caplog.set_level(logging.WARNING, logger=FALLBACK_LOGGER)
    port = _discovery_env(services, shared_probe_seconds="0.05")
    await services.start("discovery")
    assert "kvm-0" in _devices(await cluster.slices())
    apiserver.gates.set(CONSUMABLE_CAPACITY, True)
    slices = await cluster.wait_for_slices(
        lambda now: _devices(now).get("kvm", {}).get("allowMultipleAllocations") is True
    )
    assert set(_devices(slices)) == set(SHARED) | EXCLUSIVE
    assert "hostdev_shared_fallback_active 0.0" in await _metrics(port)
    assert len(_messages(caplog, logging.WARNING, OFF)) == 1


async def test_gate_turned_off_later_is_noticed_in_the_answer_to_a_slice_write(
    services: Services, cluster: Cluster, apiserver: ApiServer
) -> None:
    """With no probe due, a recreated slice that comes back without the field is enough to
    switch to copies."""
    apiserver.gates.set(CONSUMABLE_CAPACITY, True)
    port = _discovery_env(services, shared_probe_seconds="3600")
    await services.start("discovery")
    (first,) = await cluster.slices()
    assert _devices([first])["kvm"]["allowMultipleAllocations"] is True
    apiserver.gates.set(CONSUMABLE_CAPACITY, False)
    await cluster.delete_slice(first["metadata"]["name"])
    slices = await cluster.wait_for_slices(lambda now: "kvm-0" in _devices(now))
    assert "kvm" not in _devices(slices)
    text = await _metrics(port)
    assert "hostdev_shared_fallback_active 1.0" in text
    assert 'result="dropped"' not in text  # the write's answer did it, not a probe


async def test_zero_copies_is_said_at_error_and_in_the_metric(
    services: Services, cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """With HOSTDEV_SHARED_COPIES=0 the shared devices go out exclusive, never silently."""
    caplog.set_level(logging.WARNING, logger=FALLBACK_LOGGER)
    port = _discovery_env(services, shared_copies="0")
    await services.start("discovery")
    devices = _devices(await cluster.slices())
    assert set(devices) == set(SHARED) | EXCLUSIVE
    assert "allowMultipleAllocations" not in devices["kvm"]
    (error,) = [
        r for r in caplog.records if r.name == FALLBACK_LOGGER and r.levelno == logging.ERROR
    ]
    assert set(error.__dict__["devices"]) == set(SHARED)
    text = await _metrics(port)
    assert "hostdev_shared_devices_exclusive 4.0" in text
    assert "hostdev_shared_fallback_active 1.0" in text


async def test_feature_on_publishes_each_shared_device_once_without_copies(
    services: Services, cluster: Cluster, apiserver: ApiServer
) -> None:
    """The existing behaviour: the server keeps the field, so no copies and no fallback."""
    apiserver.gates.set(CONSUMABLE_CAPACITY, True)
    port = _discovery_env(services)
    await services.start("discovery")
    devices = _devices(await cluster.slices())
    assert set(devices) == set(SHARED) | EXCLUSIVE
    assert devices["kvm"]["allowMultipleAllocations"] is True
    text = await _metrics(port)
    assert "hostdev_shared_fallback_active 0.0" in text
    assert 'hostdev_shared_probes_total{result="kept"} 1.0' in text


async def test_health_stream_reports_a_prepared_copy_healthy_under_its_own_name(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """The kubelet hears about `kvm-2` as the healthy /dev/kvm, not as a device gone."""
    await services.start()
    plugin = await kubelet.wait_for_driver(node_config.driver, timeout=10)
    claim = await cluster.allocated_claim("default", "vm", [Allocated("kvm", "kvm-2")])
    assert (await plugin.prepare([claim])).kubelet_failure is None
    async with asyncio.timeout(10), plugin.watch_health() as stream:
        async for update in stream:
            reported = [(d.device_name, d.health) for d in update.devices]
            if reported:
                break
    assert reported == [("kvm-2", "Healthy")]
