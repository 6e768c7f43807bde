"""Many shared IOMMU groups: the slices that carry their counters stay within the API's limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hostdev_testing.cluster import Cluster
from hostdev_testing.fakehost import FakeHost
from hostdev_testing.fakesysfs import FakeSysfs
from hostdev_testing.services import NodeConfig, Services

GROUPS = 35  # two functions each: 70 devices with counters, 35 counter sets


@pytest.fixture
def fake_host(short_dir: Path) -> FakeHost:
    """Dual-function devices without ACS between their functions: two per IOMMU group."""
    sysfs = FakeSysfs(short_dir / "root")
    sysfs.iommu("dmar0")
    sysfs.pci_driver("vfio-pci")
    for index in range(GROUPS):
        for function in (0, 1):
            sysfs.pci(
                f"0000:{index + 1:02x}:00.{function}",
                vendor=0x8086,
                device=0x1521,
                class_code=0x020000,
                driver="igb",
                iommu_group=100 + index,
            )
    return FakeHost(sysfs.root)


async def test_devices_consuming_group_counters_fill_slices_of_at_most_64(
    services: Services, node_config: NodeConfig, cluster: Cluster
) -> None:
    """70 functions each consuming its group's counter are published in device slices of at
    most 64 and counter slices of at most 8 sets, all accepted by the API emulator (which
    enforces resource.k8s.io/v1's limits and DNS labels on write)."""
    node_config.devices_config.write_text(json.dumps({"pci": [{"vendor": "8086"}]}))
    await services.start("discovery")
    slices = await cluster.slices()
    device_slices = [s["spec"]["devices"] for s in slices if "devices" in s["spec"]]
    counter_slices = [s["spec"]["sharedCounters"] for s in slices if "sharedCounters" in s["spec"]]
    assert sorted(len(d) for d in device_slices) == [6, 64]
    assert all(len(c) <= 8 for c in counter_slices)
    assert sum(len(c) for c in counter_slices) == GROUPS
    assert all("consumesCounters" in d for devices in device_slices for d in devices)
