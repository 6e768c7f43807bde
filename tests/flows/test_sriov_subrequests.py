"""SR-IOV VFs from prioritized-list (firstAvailable) requests: config addressed to a
subrequest, interface names in the container, and the device status the driver writes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hostdev_testing.cluster import Claim, Cluster
from hostdev_testing.fakehost import FakeHost
from hostdev_testing.fakenetlink import FakeNetlink
from hostdev_testing.fakesysfs import SampleHost, snapshot
from hostdev_testing.kubelet import KubeletSimulator, RegisteredPlugin
from hostdev_testing.services import NodeConfig, Services

VF2 = "vf-0000-3b-02-2"
VF3 = "vf-0000-3b-02-3"
NAMESPACE = "net"
# The node hands VFs out in vfio mode unless a claim's config says otherwise: a config
# that is dropped shows as a VF on vfio-pci.
CONFIG: dict[str, Any] = {"sriov": [{"pf": "0000:3b:00.0"}]}


@pytest.fixture
def fake_host(sample: SampleHost) -> FakeHost:
    """This module's host tree is the acceptance host (PF 3b:00.0, VFs 3b:02.2-3 on iavf)."""
    return FakeHost(sample.root)


async def _plugin(
    services: Services, kubelet: KubeletSimulator, config: NodeConfig
) -> RegisteredPlugin:
    config.devices_config.write_text(json.dumps(CONFIG))
    await services.start()
    return await kubelet.wait_for_driver(config.driver, timeout=10)


def _opaque(driver: str, requests: list[str], source: str, **parameters: Any) -> dict[str, Any]:
    parameters = {"apiVersion": "hostdev.k8s.io/v1alpha1", "kind": "VfConfig", **parameters}
    return {
        "source": source,
        "requests": requests,
        "opaque": {"driver": driver, "parameters": parameters},
    }


async def _prioritized_claim(
    cluster: Cluster,
    name: str,
    chosen: str,
    devices: list[str],
    config: list[dict[str, Any]],
) -> Claim:
    """A claim whose request `vf` prefers two VFs as interfaces (`vf/netdev`) over one for a
    VM (`vf/vfio`), allocated as the scheduler would: every result of `vf` from the
    subrequest `chosen`, the config entries copied into the allocation, class ones first."""
    path = f"/apis/resource.k8s.io/v1/namespaces/{NAMESPACE}/resourceclaims"
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "devices": {
                "requests": [
                    {
                        "name": "vf",
                        "firstAvailable": [
                            {
                                "name": "netdev",
                                "deviceClassName": "hostdev.k8s.io",
                                "allocationMode": "ExactCount",
                                "count": 2,
                            },
                            {"name": "vfio", "deviceClassName": "hostdev.k8s.io"},
                        ],
                    }
                ],
                "config": [
                    {"requests": c["requests"], "opaque": c["opaque"]}
                    for c in config
                    if c["source"] == "FromClaim"
                ],
            }
        },
    }
    created = await cluster.call("POST", path, claim)
    results = [
        {"request": f"vf/{chosen}", "driver": cluster.driver, "pool": cluster.node, "device": d}
        for d in devices
    ]
    node = {"key": "metadata.name", "operator": "In", "values": [cluster.node]}
    created["status"] = {
        "allocation": {
            "devices": {"results": results, "config": config},
            "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [node]}]},
        },
        "reservedFor": [{"resource": "pods", "name": f"{name}-pod", "uid": f"{name}-pod-uid"}],
    }
    await cluster.call("PUT", f"{path}/{name}/status", created)
    return Claim(namespace=NAMESPACE, name=name, uid=created["metadata"]["uid"])


def _net_devices(node_config: NodeConfig, claim: Claim) -> list[dict[str, str]]:
    spec = json.loads(next(node_config.cdi_root.glob(f"k8s.*-device_{claim.uid}.json")).read_text())
    return [n for d in spec["devices"] for n in d["containerEdits"].get("netDevices", [])]


async def _status_devices(cluster: Cluster, claim: Claim) -> list[dict[str, Any]]:
    stored = await cluster.call(
        "GET", f"/apis/resource.k8s.io/v1/namespaces/{NAMESPACE}/resourceclaims/{claim.name}"
    )
    devices: list[dict[str, Any]] = stored["status"].get("devices") or []
    return devices


async def test_subrequest_config_puts_its_vfs_in_netdevice_mode_with_two_names(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
) -> None:
    """`vf/netdev` config reaches both VFs of that subrequest (netdevice, not the node's vfio
    default), the parent `vf` class config reaches them too, the sibling `vf/vfio` config
    does not; each VF is handed over under its own name, and the status written says what
    was handed to the runtime, no more. Unprepare leaves the host as it was."""
    plugin = await _plugin(services, kubelet, node_config)
    await cluster.create_namespace(NAMESPACE)
    netlink = FakeNetlink(sample.root)
    before = snapshot(sample.root)
    driver = node_config.driver
    claim = await _prioritized_claim(
        cluster,
        "pair",
        "netdev",
        [VF2, VF3],
        [
            _opaque(driver, ["vf"], "FromClass", vlan=100, trust=False),
            _opaque(driver, ["vf/netdev"], "FromClaim", mode="netdevice"),
            _opaque(driver, ["vf/vfio"], "FromClaim", mode="vfio", vlan=7),
        ],
    )
    prepared = await plugin.prepare([claim])
    assert prepared.kubelet_failure is None, prepared
    # The kubelet matches containers' claims on the top-level request name.
    assert {d.request_names for d in prepared.claims[claim.uid].devices} == {("vf",)}
    for address in sample.netdev_vfs:
        driver_link = sample.root / f"sys/bus/pci/devices/{address}/driver"
        assert driver_link.resolve().name == "iavf"
    assert [netlink.get_vf("ens1f0", i).vlan for i in (2, 3)] == [100, 100]
    assert _net_devices(node_config, claim) == [
        {"hostInterfaceName": "ens1f0v2", "name": VF2},
        {"hostInterfaceName": "ens1f0v3", "name": VF3},
    ]
    # The emulator checks the status against the resource.k8s.io/v1 schema on write: the
    # entries are there only if it accepted them.
    entries = {e["device"]: e for e in await _status_devices(cluster, claim)}
    assert set(entries) == {VF2, VF3}
    for device, host_interface in ((VF2, "ens1f0v2"), (VF3, "ens1f0v3")):
        entry = entries[device]
        mac = (sample.root / f"sys/class/net/{host_interface}/address").read_text().strip()
        assert entry["networkData"] == {"interfaceName": device, "hardwareAddress": mac}
        (condition,) = entry["conditions"]
        assert (condition["type"], condition["status"], condition["reason"]) == (
            "Ready",
            "True",
            "HandedToRuntime",
        )
        assert "netDevices" in condition["message"]
        assert "moved in" not in condition["message"]
        assert condition["observedGeneration"] >= 1
    assert (await plugin.unprepare([claim])).kubelet_failure is None
    assert await _status_devices(cluster, claim) == []
    assert snapshot(sample.root) == before


async def test_config_for_another_subrequest_leaves_the_vf_in_the_nodes_mode(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
) -> None:
    """When the scheduler chose `vf/vfio`, the `vf/netdev` config does not apply: the VF goes
    to vfio-pci (the node's mode) with the `vf/vfio` VLAN, and no interface status is written."""
    plugin = await _plugin(services, kubelet, node_config)
    await cluster.create_namespace(NAMESPACE)
    netlink = FakeNetlink(sample.root)
    driver = node_config.driver
    claim = await _prioritized_claim(
        cluster,
        "vm",
        "vfio",
        [VF2],
        [
            _opaque(driver, ["vf/netdev"], "FromClaim", mode="netdevice", interfaceName="x0"),
            _opaque(driver, ["vf/vfio"], "FromClaim", vlan=7),
        ],
    )
    assert (await plugin.prepare([claim])).kubelet_failure is None
    driver_link = sample.root / f"sys/bus/pci/devices/{sample.netdev_vfs[0]}/driver"
    assert driver_link.resolve().name == "vfio-pci"
    assert netlink.get_vf("ens1f0", 2).vlan == 7
    assert _net_devices(node_config, claim) == []
    assert await _status_devices(cluster, claim) == []
    assert (await plugin.unprepare([claim])).kubelet_failure is None


async def test_one_interface_name_for_two_vfs_fails_the_claim_before_any_host_action(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
) -> None:
    """interfaceName set on a request that got two VFs would give the pod two `net1`s: the
    prepare fails naming both devices, and the host is untouched."""
    plugin = await _plugin(services, kubelet, node_config)
    await cluster.create_namespace(NAMESPACE)
    before = snapshot(sample.root)
    claim = await _prioritized_claim(
        cluster,
        "clash",
        "netdev",
        [VF2, VF3],
        [_opaque(node_config.driver, ["vf"], "FromClaim", mode="netdevice", interfaceName="net1")],
    )
    error = (await plugin.prepare([claim])).claims[claim.uid].error
    assert f"{VF2} and {VF3} would both be interface 'net1'" in error
    assert snapshot(sample.root) == before
