"""IOMMU groups through the whole stack: never take a device nobody asked for.

On the acceptance host the NVMe 0000:01:00.0 shares IOMMU group 12 with an AHCI
controller (on a real host that can be the boot disk's).
"""

from __future__ import annotations

import errno
import json
from typing import Any

import nats
import pytest

from hostdev_bus import NatsBus
from hostdev_events import subjects
from hostdev_events.inventory import GetInventory, InventorySnapshot
from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.fakehost import FakeHost
from hostdev_testing.fakesysfs import FakeKernel, SampleHost, snapshot
from hostdev_testing.kubelet import KubeletSimulator, RegisteredPlugin
from hostdev_testing.services import NodeConfig, Services

NVME = "pci-0000-01-00-0"
AHCI = "pci-0000-01-00-1"


@pytest.fixture
def fake_host(sample: SampleHost) -> FakeHost:
    """This module's host tree is the acceptance host."""
    return FakeHost(sample.root)


async def _start(
    services: Services, kubelet: KubeletSimulator, config: NodeConfig, pci: list[dict[str, Any]]
) -> RegisteredPlugin:
    config.devices_config.write_text(json.dumps({"pci": pci}))
    await services.start()
    return await kubelet.wait_for_driver(config.driver, timeout=10)


async def _inventory(config: NodeConfig) -> InventorySnapshot:
    nc = await nats.connect(config.nats_url)
    try:
        return await NatsBus(nc).request(
            subjects.inventory_get(config.node), GetInventory(), InventorySnapshot, 5
        )
    finally:
        await nc.close()


def _devices(slices: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for s in slices for d in s["spec"].get("devices", [])}


async def test_function_with_an_unoffered_group_sibling_is_not_published_and_inventory_says_why(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
) -> None:
    """Selecting only the NVMe publishes no PCI device; `inventory.get` names the AHCI
    sibling as the reason; a claim for the NVMe (a stale allocation) is refused and the
    tree is untouched."""
    plugin = await _start(services, kubelet, node_config, [{"vendor": "144d"}])
    assert not [n for n in _devices(await cluster.slices()) if n.startswith("pci-")]
    inventory = await _inventory(node_config)
    assert not [d for d in inventory.devices if d.family == "pci"]
    (shared,) = [n for n in inventory.not_offered if n.candidate == sample.nvme]
    assert (shared.family, shared.code) == ("pci", "iommu-group-shared")
    assert f"{sample.nvme_sibling} (ahci)" in shared.reason
    before = snapshot(sample.root)
    claim = await cluster.allocated_claim(
        "vms", "stale", [Allocated("d", NVME)], namespace_create=True
    )
    assert NVME in (await plugin.prepare([claim])).claims[claim.uid].error
    assert snapshot(sample.root) == before


async def test_two_claims_can_never_be_allocated_functions_of_one_group(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
) -> None:
    """Both functions of group 12 selected: the slices (accepted by the API emulator against
    the OpenAPI schema) carry one counter set for the group with one unit, both devices
    consume it, and the ledger refuses a second claim on the other function."""
    plugin = await _start(services, kubelet, node_config, [{"address": "0000:01:00.*"}])
    slices = await cluster.slices()
    devices = _devices(slices)
    counter_set = f"iommu-group-{sample.nvme_group}"
    for name in (NVME, AHCI):
        assert devices[name]["consumesCounters"] == [
            {"counterSet": counter_set, "counters": {"exclusive": {"value": "1"}}}
        ]
    sets = [c for s in slices for c in s["spec"].get("sharedCounters", [])]
    assert {"name": counter_set, "counters": {"exclusive": {"value": "1"}}} in sets
    first = await cluster.allocated_claim("vms", "a", [Allocated("d", NVME)], namespace_create=True)
    second = await cluster.allocated_claim("vms", "b", [Allocated("d", AHCI)])
    assert (await plugin.prepare([first])).kubelet_failure is None
    refused = (await plugin.prepare([second])).claims[second.uid].error
    assert f"counter set {counter_set} is exhausted" in refused
    assert (await plugin.unprepare([first])).kubelet_failure is None
    assert (await plugin.prepare([second])).kubelet_failure is None


async def test_prepare_refuses_when_an_unoffered_function_joined_the_group(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
) -> None:
    """A function hot-plugged into group 12 after discovery (no rescan yet): prepare refuses
    with the new function named and unbinds nothing."""
    plugin = await _start(
        services,
        kubelet,
        node_config,
        [{"address": sample.nvme}, {"address": sample.nvme_sibling}],
    )
    sample.sysfs.pci(
        "0000:05:00.0",
        vendor=0x1B21,
        device=0x2142,
        class_code=0x0C0330,
        driver="xhci_hcd",
        iommu_group=sample.nvme_group,
    )
    before = snapshot(sample.root)
    claim = await cluster.allocated_claim(
        "vms", "late", [Allocated("d", NVME)], namespace_create=True
    )
    error = (await plugin.prepare([claim])).claims[claim.uid].error
    assert "0000:05:00.0 (xhci_hcd)" in error
    assert "refusing" in error
    assert snapshot(sample.root) == before


async def test_a_refused_vfio_bind_leaves_the_host_as_it_was_with_a_per_claim_error(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
) -> None:
    """The kernel refuses the vfio-pci bind of the NVMe after it left nvme: the kubelet gets a
    per-claim error naming the device and the errno, the tree is exactly as before (the NVMe
    back on nvme), and the claim prepares once the kernel accepts."""
    plugin = await _start(services, kubelet, node_config, [{"address": "0000:01:00.*"}])
    before = snapshot(sample.root)
    claim = await cluster.allocated_claim(
        "vms", "refused", [Allocated("d", NVME)], namespace_create=True
    )
    FakeKernel(sample.root).refuse("/sys/bus/pci/drivers/vfio-pci/bind", errno.ENODEV)
    outcome = await plugin.prepare([claim])
    error = outcome.claims[claim.uid].error
    assert NVME in error
    assert "ENODEV" in error
    assert snapshot(sample.root) == before
    assert (await plugin.prepare([claim])).claims[claim.uid].error == ""
