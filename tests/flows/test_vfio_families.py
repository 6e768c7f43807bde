"""PCI passthrough, SR-IOV VFs and vGPU mdevs through the gateway, on a fake kernel."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.fakehost import FakeHost
from hostdev_testing.fakenetlink import FakeNetlink
from hostdev_testing.fakesysfs import FakeKernel, SampleHost, snapshot
from hostdev_testing.kubelet import KubeletSimulator, RegisteredPlugin
from hostdev_testing.services import NodeConfig, Services

NVME = "pci-0000-01-00-0"
VF2 = "vf-0000-3b-02-2"
VF0 = "vf-0000-3b-02-0"
V5_4 = "mdev-0000-00-02-0-i915-gvtg-v5-4"

CONFIG: dict[str, Any] = {
    # The NVMe shares IOMMU group 12 with the AHCI controller: taken whole, by opt-in.
    "pci": [{"vendor": "144d", "device": "a808", "wholeGroup": True}],
    "sriov": [{"pf": "0000:3b:00.0"}],
    "mdev": [{"parent": "0000:00:02.0"}],
    "usb": [{"vendor": "0781"}, {"vendor": "046d"}],
    "hostPaths": [{"path": "/dev/kvm", "name": "kvm", "shared": True}],
}


@pytest.fixture
def fake_host(sample: SampleHost) -> FakeHost:
    """This module's host tree is the acceptance host."""
    return FakeHost(sample.root)


async def _plugin(
    services: Services, kubelet: KubeletSimulator, config: NodeConfig
) -> RegisteredPlugin:
    config.devices_config.write_text(json.dumps(CONFIG))
    await services.start()
    return await kubelet.wait_for_driver(config.driver, timeout=10)


def _devices(slices: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for s in slices for d in s["spec"].get("devices", [])}


async def test_slices_carry_pci_attributes_and_counters_in_their_own_slice(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """The API accepts every slice (checked against the OpenAPI schema on write); PCI devices
    carry the standard attributes, VFs their PF, and mdev devices consume a counter set that
    sits alone in its slice."""
    await _plugin(services, kubelet, node_config)
    slices = await cluster.slices()
    devices = _devices(slices)
    nvme = devices[NVME]["attributes"]
    assert nvme["resource.kubernetes.io/pciBusID"] == {"string": "0000:01:00.0"}
    assert nvme["resource.kubernetes.io/pcieRoot"] == {"string": "pci0000:00"}
    assert nvme["iommuGroup"] == {"int": 12}
    assert nvme["numaNode"] == {"int": 0}
    assert (nvme["vendorID"], nvme["deviceID"]) == ({"string": "144d"}, {"string": "a808"})
    assert "mdevUUID" not in nvme
    vf = devices[VF2]["attributes"]
    assert vf["pfName"] == {"string": "ens1f0"}
    assert vf["vfIndex"] == {"int": 2}
    assert vf["resource.kubernetes.io/pcieRoot"] == {"string": "pci0000:3a"}
    assert len([n for n in devices if n.startswith("vf-")]) == 4
    mdev = [n for n in devices if n.startswith("mdev-")]
    assert len([n for n in mdev if "v5-4" in n]) == 2
    assert len([n for n in mdev if "v5-8" in n]) == 4
    counters = [s for s in slices if "sharedCounters" in s["spec"]]
    assert len(counters) == 1
    assert "devices" not in counters[0]["spec"]
    (counter_set,) = counters[0]["spec"]["sharedCounters"]
    assert counter_set["counters"] == {"units": {"value": "4"}}
    assert devices[V5_4 + "-0"]["consumesCounters"][0]["counters"] == {"units": {"value": "2"}}
    assert {s["spec"]["pool"]["resourceSliceCount"] for s in slices} == {len(slices)}


async def test_opted_in_nvme_moves_its_whole_group_and_unprepare_restores_the_tree(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
) -> None:
    """With `wholeGroup`, prepare moves the NVMe and its unselected AHCI sibling to vfio-pci
    and hands over /dev/vfio/12; unprepare puts both back so the tree is exactly as before."""
    plugin = await _plugin(services, kubelet, node_config)
    before = snapshot(sample.root)
    claim = await cluster.allocated_claim(
        "vms", "nvme", [Allocated("nvme", NVME)], namespace_create=True
    )
    outcome = await plugin.prepare([claim])
    assert outcome.kubelet_failure is None
    assert (sample.root / "dev/vfio/12").exists()
    for bdf in (sample.nvme, sample.nvme_sibling):
        assert (sample.root / f"sys/bus/pci/devices/{bdf}/driver").resolve().name == "vfio-pci"
    spec = json.loads(next(node_config.cdi_root.glob(f"k8s.*-device_{claim.uid}.json")).read_text())
    paths = [n["path"] for n in spec["devices"][0]["containerEdits"]["deviceNodes"]]
    assert paths == ["/dev/vfio/vfio", "/dev/vfio/12"]
    assert (await plugin.unprepare([claim])).kubelet_failure is None
    assert snapshot(sample.root) == before


async def test_group_sibling_cannot_be_split_from_a_prepared_function(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """Two claims never share one IOMMU group: the group's counter is held with the device."""
    CONFIG["pci"].append({"address": "0000:01:00.1"})
    try:
        plugin = await _plugin(services, kubelet, node_config)
    finally:
        CONFIG["pci"].pop()
    first = await cluster.allocated_claim("vms", "a", [Allocated("d", NVME)], namespace_create=True)
    second = await cluster.allocated_claim("vms", "b", [Allocated("d", "pci-0000-01-00-1")])
    assert (await plugin.prepare([first])).kubelet_failure is None
    refused = await plugin.prepare([second])
    assert "iommu-group-12" in refused.claims[second.uid].error


async def test_busy_sibling_rolls_back_and_names_the_device(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
) -> None:
    """When the kernel refuses to unbind the sibling (EBUSY), the NVMe goes back to nvme and the
    claim's error names the device."""
    plugin = await _plugin(services, kubelet, node_config)
    before = snapshot(sample.root)
    FakeKernel(sample.root).busy(sample.nvme_sibling)
    claim = await cluster.allocated_claim(
        "vms", "busy", [Allocated("nvme", NVME)], namespace_create=True
    )
    error = (await plugin.prepare([claim])).claims[claim.uid].error
    assert NVME in error
    assert "EBUSY" in error
    assert snapshot(sample.root) == before
    FakeKernel(sample.root).release(sample.nvme_sibling)
    assert (await plugin.prepare([claim])).kubelet_failure is None


async def test_vf_in_netdevice_mode_with_settings_is_reverted(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
) -> None:
    """A VF claimed in netdevice mode with VLAN, MAC and trust gets them on its PF, moves its
    interface into the container and reports it in the claim's device status; unprepare
    reverts the settings, the status and the tree."""
    plugin = await _plugin(services, kubelet, node_config)
    netlink = FakeNetlink(sample.root)
    before = snapshot(sample.root)
    config = {
        "mode": "netdevice",
        "vlan": 100,
        "mac": "52:54:00:12:34:56",
        "trust": True,
        "interfaceName": "net1",
    }
    claim = await cluster.allocated_claim(
        "vms", "vf", [Allocated("vf", VF2)], namespace_create=True, config=config
    )
    assert (await plugin.prepare([claim])).kubelet_failure is None
    applied = netlink.get_vf("ens1f0", 2)
    assert (applied.vlan, applied.mac, applied.trust) == (100, "52:54:00:12:34:56", True)
    spec = json.loads(next(node_config.cdi_root.glob(f"k8s.*-device_{claim.uid}.json")).read_text())
    assert spec["devices"][0]["containerEdits"]["netDevices"] == [
        {"hostInterfaceName": "ens1f0v2", "name": "net1"}
    ]
    assert spec["cdiVersion"] == "1.1.0"
    stored = await cluster.call(
        "GET", f"/apis/resource.k8s.io/v1/namespaces/vms/resourceclaims/{claim.name}"
    )
    (entry,) = stored["status"]["devices"]
    assert (entry["driver"], entry["device"]) == (node_config.driver, VF2)
    assert entry["networkData"] == {"interfaceName": "net1", "hardwareAddress": "52:54:00:12:34:56"}
    assert entry["conditions"][0]["type"] == "Ready"
    assert (await plugin.unprepare([claim])).kubelet_failure is None
    stored = await cluster.call(
        "GET", f"/apis/resource.k8s.io/v1/namespaces/vms/resourceclaims/{claim.name}"
    )
    assert not stored["status"].get("devices")
    reverted = netlink.get_vf("ens1f0", 2)
    assert (reverted.vlan, reverted.mac, reverted.trust) == (0, "00:00:00:00:00:00", False)
    assert snapshot(sample.root) == before


async def test_vf_in_vfio_mode_round_trip(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
) -> None:
    """A VF on iavf goes to vfio-pci for the claim and back to iavf after it."""
    plugin = await _plugin(services, kubelet, node_config)
    before = snapshot(sample.root)
    claim = await cluster.allocated_claim(
        "vms", "vf", [Allocated("vf", VF2)], namespace_create=True
    )
    assert (await plugin.prepare([claim])).kubelet_failure is None
    assert (sample.root / "dev/vfio/43").exists()
    assert (await plugin.unprepare([claim])).kubelet_failure is None
    assert snapshot(sample.root) == before


async def test_mdev_is_created_on_prepare_and_removed_on_unprepare(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
) -> None:
    """Prepare writes a fresh UUID to the type's create file and hands over the mdev's group;
    unprepare removes it and the tree is as before."""
    plugin = await _plugin(services, kubelet, node_config)
    before = snapshot(sample.root)
    claim = await cluster.allocated_claim(
        "vms", "vgpu", [Allocated("gpu", V5_4 + "-0")], namespace_create=True
    )
    assert (await plugin.prepare([claim])).kubelet_failure is None
    (created,) = list((sample.root / "sys/bus/mdev/devices").iterdir())
    types = sample.root / "sys/class/mdev_bus/0000:00:02.0/mdev_supported_types/i915-GVTg_V5_4"
    assert (types / "available_instances").read_text().strip() == "1"
    group = (created / "iommu_group").resolve().name
    spec = json.loads(next(node_config.cdi_root.glob(f"k8s.*-device_{claim.uid}.json")).read_text())
    paths = [n["path"] for n in spec["devices"][0]["containerEdits"]["deviceNodes"]]
    assert paths == ["/dev/vfio/vfio", f"/dev/vfio/{group}"]
    assert (await plugin.unprepare([claim])).kubelet_failure is None
    assert snapshot(sample.root) == before


async def test_third_instance_of_a_two_instance_profile_is_refused_before_any_write(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
) -> None:
    """With both V5_4 slots' counter used, a third V5_4 (even through a mis-scheduled V5_8 slot
    set) is refused by the allocator and the kernel sees no create write for it."""
    plugin = await _plugin(services, kubelet, node_config)
    claims = [
        await cluster.allocated_claim(
            "vms", f"g{i}", [Allocated("gpu", f"{V5_4}-{i}")], namespace_create=i == 0
        )
        for i in range(2)
    ]
    assert (await plugin.prepare(claims)).kubelet_failure is None
    creates_before = len(list((sample.root / "sys/bus/mdev/devices").iterdir()))
    extra = await cluster.allocated_claim(
        "vms", "g-extra", [Allocated("gpu", "mdev-0000-00-02-0-i915-gvtg-v5-8-0")]
    )
    refused = (await plugin.prepare([extra])).claims[extra.uid].error
    assert "counter set mdev-0000-00-02-0 is exhausted" in refused
    assert len(list((sample.root / "sys/bus/mdev/devices").iterdir())) == creates_before


async def test_released_group_and_counters_can_be_claimed_again(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """After unprepare, the NVMe's IOMMU group and a vGPU's counter share are free for the
    next claims: every ledger entry the first claims held is released."""
    plugin = await _plugin(services, kubelet, node_config)
    await cluster.create_namespace("vms")
    for round_number in range(2):
        nvme = await cluster.allocated_claim("vms", f"n{round_number}", [Allocated("d", NVME)])
        gpus = [
            await cluster.allocated_claim(
                "vms", f"g{round_number}{i}", [Allocated("gpu", f"{V5_4}-{i}")]
            )
            for i in range(2)
        ]
        prepared = await plugin.prepare([nvme, *gpus])
        assert prepared.kubelet_failure is None, prepared
        assert (await plugin.unprepare([nvme, *gpus])).kubelet_failure is None
