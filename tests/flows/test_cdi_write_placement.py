"""The CDI writer writes and removes a claim's files the same way on the event loop (an
in-memory spec directory) as on worker threads (a disk)."""

from __future__ import annotations

import json

import pytest

from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.kubelet import KubeletSimulator
from hostdev_testing.services import NodeConfig, Services


@pytest.mark.parametrize("placement", ["always", "never"])
async def test_specs_and_metadata_are_written_and_removed_wherever_the_writer_runs_them(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    placement: str,
) -> None:
    services.extra_env["HOSTDEV_CDI_WRITE_ON_LOOP"] = placement
    services.extra_env["HOSTDEV_DEVICE_METADATA"] = "all"
    await services.start()
    plugin = await kubelet.wait_for_driver(node_config.driver, timeout=10)
    claim = await cluster.allocated_claim("default", "vm", [Allocated("kvm", "kvm")])
    prepared = await plugin.prepare([claim])
    assert prepared.kubelet_failure is None
    spec_file = node_config.cdi_root / f"k8s.{node_config.driver}-device_{claim.uid}.json"
    spec = json.loads(spec_file.read_text())
    assert [d["name"] for d in spec["devices"]] == [f"{claim.uid}-kvm"]
    folder = node_config.cdi_root / "dra-device-metadata" / claim.uid
    assert [p.name for p in folder.rglob("metadata.json")] == ["metadata.json"]
    assert not list(node_config.cdi_root.glob("*.tmp"))

    assert (await plugin.unprepare([claim])).kubelet_failure is None
    assert not spec_file.exists()
    assert not folder.exists()
    assert not [p for p in node_config.cdi_root.iterdir() if claim.uid in p.name]
