"""A health signal beyond "the path exists", end to end: the PF's link reaches the kubelet."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.fakehost import FakeHost
from hostdev_testing.fakesysfs import SampleHost
from hostdev_testing.kubelet import KubeletSimulator
from hostdev_testing.services import NodeConfig, Services

VF2 = "vf-0000-3b-02-2"


@pytest.fixture
def fake_host(sample: SampleHost) -> FakeHost:
    """This module's host tree is the acceptance host."""
    return FakeHost(sample.root)


def _vf_taints(slices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for item in slices:
        for entry in item["spec"].get("devices", []):
            if entry["name"] == VF2:
                taints: list[dict[str, Any]] = entry.get("taints", [])
                return taints
    raise AssertionError(f"{VF2} is not published")


async def test_pf_link_down_reaches_the_health_stream_and_the_slice_and_recovers(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
) -> None:
    """The prepared VF's PF loses its carrier: the kubelet's stream reports the VF Unhealthy
    with the PF's name and the slice taints it; the carrier back makes it Healthy again."""
    node_config.devices_config.write_text(json.dumps({"sriov": [{"pf": sample.pf}]}))
    services.extra_env |= {
        "HOSTDEV_SCAN_SECONDS": "0.05",
        "HOSTDEV_DEBOUNCE_SECONDS": "0.2",
        "HOSTDEV_TAINT_UNHEALTHY": "true",
        "HOSTDEV_HEALTH_RESEND_SECONDS": "0.2",
    }
    await services.start()
    plugin = await kubelet.wait_for_driver(node_config.driver, timeout=10)
    claim = await cluster.allocated_claim(
        "vms", "vf", [Allocated("vf", VF2)], namespace_create=True
    )
    assert (await plugin.prepare([claim])).kubelet_failure is None

    async with plugin.watch_health() as stream:
        async for update in stream:
            if [(d.device_name, d.health) for d in update.devices] == [(VF2, "Healthy")]:
                break
        sample.sysfs.link_down(sample.pf_netdev)
        async for update in stream:
            if [(d.device_name, d.health) for d in update.devices] == [(VF2, "Unhealthy")]:
                assert update.devices[0].message == "PF ens1f0 link down (no carrier)"
                break
        slices = await cluster.wait_for_slices(lambda s: bool(_vf_taints(s)))
        assert _vf_taints(slices) == [{"key": "hostdev.k8s.io/unhealthy", "effect": "NoSchedule"}]

        sample.sysfs.link_up(sample.pf_netdev)
        async for update in stream:
            if [(d.device_name, d.health) for d in update.devices] == [(VF2, "Healthy")]:
                assert update.devices[0].message == ""
                break
    await cluster.wait_for_slices(lambda s: not _vf_taints(s))
    assert (await plugin.unprepare([claim])).kubelet_failure is None
