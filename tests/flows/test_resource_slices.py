"""Discovery publishes the node's ResourceSlices: shape, owner, limits, and keeping them there."""

from __future__ import annotations

from typing import Any

from hostdev_testing.apiserver.schema import OpenApi
from hostdev_testing.cluster import Cluster
from hostdev_testing.fakehost import FakeHost
from hostdev_testing.schemas import schemas_dir
from hostdev_testing.services import NodeConfig, Services


def _devices(slices: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for s in slices for d in s["spec"]["devices"]}


async def test_slice_lists_host_devices_with_owner_and_attributes(
    services: Services, node_config: NodeConfig, cluster: Cluster
) -> None:
    """One slice for the demo node: pool = node, owned by the Node, shared devices marked."""
    await services.start("discovery")
    (only,) = await cluster.slices()
    spec = only["spec"]
    assert spec["driver"] == node_config.driver
    assert spec["nodeName"] == node_config.node
    assert spec["pool"] == {"name": node_config.node, "generation": 1, "resourceSliceCount": 1}
    (owner,) = only["metadata"]["ownerReferences"]
    node = await cluster.call("GET", f"/api/v1/nodes/{node_config.node}")
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Node",
        node_config.node,
        node["metadata"]["uid"],
        True,
    )
    devices = _devices([only])
    assert set(devices) == {"kvm", "dev-dri-renderd128", "vhost-net", "tun", "udmabuf", "x11"}
    assert devices["kvm"]["allowMultipleAllocations"] is True
    assert "allowMultipleAllocations" not in devices["udmabuf"]
    render = devices["dev-dri-renderd128"]["attributes"]
    assert render["resource.kubernetes.io/pciBusID"] == {"string": "0000:00:02.0"}
    assert render["resource.kubernetes.io/pcieRoot"] == {"string": "pci0000:00"}
    assert devices["x11"]["attributes"]["type"] == {"string": "mount"}


async def test_more_than_128_devices_split_into_slices_of_one_pool(
    services: Services, node_config: NodeConfig, cluster: Cluster, fake_host: FakeHost
) -> None:
    """130 devices become two slices with the same pool generation and a count of two."""
    for index in range(124):
        fake_host.device_node(f"/dev/fake/n{index:03d}")
    fake_host.write_config(
        node_config.devices_config,
        [{"path": "/dev/kvm", "name": "kvm", "shared": True}, {"path": "/dev/fake/n*"},
         {"path": "/dev/net/tun"}, {"path": "/dev/vhost-net"}, {"path": "/dev/udmabuf"},
         {"path": "/dev/dri/renderD*"}, {"path": "/tmp/.X11-unix", "type": "mount"}],
    )  # fmt: skip
    await services.start("discovery")
    slices = await cluster.slices()
    assert sorted(len(s["spec"]["devices"]) for s in slices) == [2, 128]
    assert {s["spec"]["pool"]["name"] for s in slices} == {node_config.node}
    assert {s["spec"]["pool"]["generation"] for s in slices} == {1}
    assert {s["spec"]["pool"]["resourceSliceCount"] for s in slices} == {2}
    assert len(_devices(slices)) == 130


async def test_restarted_discovery_rewrites_nothing_when_nothing_changed(
    services: Services, node_config: NodeConfig, cluster: Cluster
) -> None:
    """A new discovery instance finds the slices current and leaves their resourceVersion alone."""
    await services.start("discovery")
    before = {
        s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in await cluster.slices()
    }
    await services.stop("discovery")
    await services.start("discovery")
    after = {
        s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in await cluster.slices()
    }
    assert after == before


async def test_device_gone_from_host_leaves_the_slice(
    services: Services, node_config: NodeConfig, cluster: Cluster, fake_host: FakeHost
) -> None:
    """After /dev/udmabuf disappears, the next scan republishes the one slice without it."""
    await services.start("discovery")
    (before,) = await cluster.slices()
    fake_host.remove("/dev/udmabuf")
    await services.stop("discovery")
    await services.start("discovery")
    (after,) = await cluster.slices()
    assert "udmabuf" not in _devices([after])
    assert after["metadata"]["name"] == before["metadata"]["name"]  # updated in place
    assert after["spec"]["pool"]["generation"] == 1  # one slice changed: no bump needed


async def test_slice_deleted_by_someone_else_is_recreated(
    services: Services, node_config: NodeConfig, cluster: Cluster
) -> None:
    """When the kubelet wipes the node's slices, discovery notices through its watch and republishes."""
    await services.start("discovery")
    (first,) = await cluster.slices()
    await cluster.delete_slice(first["metadata"]["name"])
    slices = await cluster.wait_for_slices(
        lambda current: len(current) == 1
        and current[0]["metadata"]["name"] != first["metadata"]["name"]
    )
    assert set(_devices(slices)) == set(_devices([first]))


async def test_published_slices_validate_against_the_official_openapi_schema(
    services: Services, cluster: Cluster
) -> None:
    """Every slice as stored validates against resource.k8s.io/v1's ResourceSlice schema."""
    await services.start("discovery")
    validator = OpenApi.load(schemas_dir()).validator("io.k8s.api.resource.v1.ResourceSlice")
    slices = await cluster.slices()
    assert slices
    for item in slices:
        body = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", **item}
        assert list(validator.iter_errors(body)) == []
