"""Shared devices with a limited number of users (KEP-5075 consumable capacity): published
with a `slots` capacity and request policy, the claims' consumed capacity honoured by the
ledger across claims and shares, and numbered copies while the API server drops the fields."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from hostdev_testing.apiserver import ApiServer
from hostdev_testing.apiserver.gates import CONSUMABLE_CAPACITY
from hostdev_testing.apiserver.schema import OpenApi
from hostdev_testing.cluster import Allocated, Claim, Cluster
from hostdev_testing.fakehost import DEMO_HOST_PATHS, FakeHost
from hostdev_testing.kubelet import KubeletSimulator, RegisteredPlugin
from hostdev_testing.schemas import schemas_dir
from hostdev_testing.services import NodeConfig, Services

SLOTS = 2


@pytest.fixture(autouse=True)
def selection(node_config: NodeConfig, fake_host: FakeHost) -> None:
    """The demo host paths, udmabuf shared by at most two claims."""
    paths = [p for p in DEMO_HOST_PATHS if p.get("name") != "udmabuf"]
    paths.append({"path": "/dev/udmabuf", "name": "udmabuf", "slots": SLOTS})
    fake_host.write_config(node_config.devices_config, paths)


def _devices(slices: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for s in slices for d in s["spec"].get("devices") or ()}


def _share(request: str = "buf", slots: str = "1") -> Allocated:
    return Allocated(request, "udmabuf", share_id=str(uuid.uuid4()), consumed=(("slots", slots),))


async def _claim(cluster: Cluster, name: str, *results: Allocated) -> Claim:
    return await cluster.allocated_claim("default", name, list(results))


async def _plugin(
    services: Services, kubelet: KubeletSimulator, config: NodeConfig
) -> RegisteredPlugin:
    await services.start()
    return await kubelet.wait_for_driver(config.driver, timeout=10)


async def test_slots_are_published_as_a_capacity_with_a_request_policy(
    services: Services, cluster: Cluster
) -> None:
    """udmabuf carries capacity `slots` = 2 with default 1 and whole units from 1 to 2, and
    allowMultipleAllocations; kvm stays unlimited; the slice is schema-valid."""
    await services.start("discovery")
    slices = await cluster.slices()
    devices = _devices(slices)
    assert devices["udmabuf"]["allowMultipleAllocations"] is True
    assert devices["udmabuf"]["capacity"] == {
        "slots": {
            "value": "2",
            "requestPolicy": {"default": "1", "validRange": {"min": "1", "max": "2", "step": "1"}},
        }
    }
    assert "capacity" not in devices["kvm"]
    validator = OpenApi.load(schemas_dir()).validator("io.k8s.api.resource.v1.ResourceSlice")
    for item in slices:
        assert list(validator.iter_errors(item)) == []


async def test_a_third_claim_is_refused_until_a_slot_is_free(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """Two one-slot claims prepare with their own shareIDs; a third is refused naming the
    slots in use; once one is unprepared, the third prepares."""
    plugin = await _plugin(services, kubelet, node_config)
    first, second, third = [await _claim(cluster, f"c{i}", _share()) for i in range(3)]
    for claim in (first, second):
        result = (await plugin.prepare([claim])).claims[claim.uid]
        assert result.error == ""
        (device,) = result.devices
        assert device.share_id
    refused = (await plugin.prepare([third])).claims[third.uid]
    assert "device udmabuf has no capacity left (slots: 2 of 2 in use" in refused.error
    assert (await plugin.unprepare([first])).kubelet_failure is None
    assert (await plugin.prepare([third])).claims[third.uid].error == ""


async def test_a_claim_asking_for_more_slots_takes_them(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """consumedCapacity slots=2 takes the whole device: a one-slot claim is refused."""
    plugin = await _plugin(services, kubelet, node_config)
    big = await _claim(cluster, "big", _share(slots="2"))
    small = await _claim(cluster, "small", _share())
    assert (await plugin.prepare([big])).claims[big.uid].error == ""
    assert "1 more asked" in (await plugin.prepare([small])).claims[small.uid].error


async def test_two_shares_in_one_claim_are_two_users(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """One claim with two requests on udmabuf (two shareIDs) prepares both, each result
    with its own shareID, and fills both slots."""
    plugin = await _plugin(services, kubelet, node_config)
    a, b = _share("a"), _share("b")
    both = await _claim(cluster, "both", a, b)
    result = (await plugin.prepare([both])).claims[both.uid]
    assert result.error == ""
    assert {(d.request_names, d.share_id) for d in result.devices} == {
        (("a",), a.share_id),
        (("b",), b.share_id),
    }
    other = await _claim(cluster, "other", _share())
    assert "2 of 2 in use" in (await plugin.prepare([other])).claims[other.uid].error
    assert (await plugin.unprepare([both])).kubelet_failure is None
    assert (await plugin.prepare([other])).claims[other.uid].error == ""


async def test_a_consumed_capacity_that_is_not_whole_is_refused(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """slots are counted in whole units: 500m is refused with the reason, nothing held."""
    plugin = await _plugin(services, kubelet, node_config)
    odd = await _claim(cluster, "odd", _share(slots="500m"))
    error = (await plugin.prepare([odd])).claims[odd.uid].error
    assert "consumed capacity slots='500m' is not a whole number" in error


class TestWithoutTheFeature:
    """DRAConsumableCapacity off: the server drops requestPolicy and allowMultipleAllocations."""

    @pytest_asyncio.fixture
    async def api_url(self) -> AsyncIterator[str]:
        """The emulator with the gate off."""
        async with ApiServer(
            schemas_dir=schemas_dir(), feature_gates={CONSUMABLE_CAPACITY: False}
        ) as url:
            yield url

    async def test_a_device_with_slots_gets_one_copy_per_slot(
        self,
        services: Services,
        kubelet: KubeletSimulator,
        node_config: NodeConfig,
        cluster: Cluster,
    ) -> None:
        """udmabuf is published as udmabuf-0 and udmabuf-1, exclusive and without the
        capacity (kvm keeps its 16 copies), and a claim for a copy prepares."""
        plugin = await _plugin(services, kubelet, node_config)
        devices = _devices(await cluster.slices())
        assert {n for n in devices if n.startswith("udmabuf")} == {"udmabuf-0", "udmabuf-1"}
        assert "capacity" not in devices["udmabuf-1"]
        assert "kvm-15" in devices
        claim = await _claim(cluster, "copy", Allocated("buf", "udmabuf-1"))
        assert (await plugin.prepare([claim])).claims[claim.uid].error == ""
