"""What KubeVirt's virt-launcher reads: the KEP-5304 metadata file, found and parsed its way."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest

from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.fakehost import FakeHost
from hostdev_testing.fakesysfs import SampleHost
from hostdev_testing.kubelet import KubeletSimulator, RegisteredPlugin
from hostdev_testing.services import NodeConfig, Services

BASE = "/var/run/kubernetes.io/dra-device-attributes"
SUPPORTED = "metadata.resource.k8s.io/v1alpha1"
PCI_ADDRESS = re.compile(r"^([\da-fA-F]{4}):([\da-fA-F]{2}):([\da-fA-F]{2})\.([0-7]{1})$")
CONFIG = {"pci": [{"vendor": "144d", "wholeGroup": True}], "mdev": [{"parent": "0000:00:02.0"}]}


@pytest.fixture
def fake_host(sample: SampleHost) -> FakeHost:
    """This module's host tree is the acceptance host."""
    return FakeHost(sample.root)


def _container_mounts(config: NodeConfig, cdi_ids: list[str]) -> dict[str, str]:
    """container path -> host path for every mount the runtime would add for these CDI IDs."""
    mounts: dict[str, str] = {}
    for spec_file in config.cdi_root.glob("*.json"):
        spec = json.loads(spec_file.read_text())
        for device in spec["devices"]:
            if f"{spec['kind']}={device['name']}" in cdi_ids:
                for mount in device["containerEdits"].get("mounts", []):
                    mounts[mount["containerPath"]] = mount["hostPath"]
    return mounts


def _kubevirt_reads(mounts: dict[str, str], directory: str, request: str) -> dict[str, Any]:
    """virt-launcher: exactly one *-metadata.json in the request's directory, a JSON stream,
    the first supported object, the request by exact name, exactly one device."""
    matches = [p for p in mounts if fnmatch.fnmatch(p, f"{directory}/*-metadata.json")]
    assert len(matches) == 1
    text = Path(mounts[matches[0]]).read_text()
    objects = [json.loads(line) for line in text.splitlines() if line.strip()]
    document = next(o for o in objects if o["apiVersion"] == SUPPORTED)
    (found,) = [r for r in document["requests"] if r["name"] == request]
    (device,) = found["devices"]
    attributes: dict[str, Any] = device["attributes"]
    return {"document": document, "attributes": attributes}


async def _plugin(
    services: Services, kubelet: KubeletSimulator, config: NodeConfig
) -> RegisteredPlugin:
    config.devices_config.write_text(json.dumps(CONFIG))
    await services.start()
    return await kubelet.wait_for_driver(config.driver, timeout=10)


async def test_pci_claim_metadata_has_pci_bus_id_and_no_mdev_uuid(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """A direct PCI claim gives resourceclaims/<claim>/<request>/<driver>-metadata.json with
    the BDF KubeVirt's parser accepts and never an mdevUUID."""
    plugin = await _plugin(services, kubelet, node_config)
    claim = await cluster.allocated_claim(
        "vms", "my-nvme-claim", [Allocated("nvme", "pci-0000-01-00-0")], namespace_create=True
    )
    outcome = await plugin.prepare([claim])
    (device,) = outcome.claims[claim.uid].devices
    metadata_id = f"{node_config.driver}/metadata={claim.uid}_nvme"
    assert metadata_id in device.cdi_device_ids
    mounts = _container_mounts(node_config, list(device.cdi_device_ids))
    directory = f"{BASE}/resourceclaims/my-nvme-claim/nvme"
    assert f"{directory}/{node_config.driver}-metadata.json" in mounts
    read = _kubevirt_reads(mounts, directory, "nvme")
    assert "mdevUUID" not in read["attributes"]
    bus_id = read["attributes"]["resource.kubernetes.io/pciBusID"]["string"]
    assert bus_id == "0000:01:00.0"
    assert PCI_ADDRESS.match(bus_id)
    assert read["document"]["kind"] == "DeviceMetadata"
    assert read["document"]["metadata"]["uid"] == claim.uid
    assert "podClaimName" not in read["document"]
    await plugin.unprepare([claim])
    assert not any(node_config.cdi_root.rglob("metadata.json"))


async def test_vgpu_claim_from_template_metadata_has_the_created_mdev_uuid(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
) -> None:
    """A claim made from a template is found under resourceclaimtemplates/<pod claim name>, and
    its mdevUUID is the UUID of the mdev that prepare created."""
    plugin = await _plugin(services, kubelet, node_config)
    claim = await cluster.allocated_claim(
        "vms",
        "virt-launcher-vm1-gpu-claim-x7k2p",
        [Allocated("gpu", "mdev-0000-00-02-0-i915-gvtg-v5-4-0")],
        namespace_create=True,
        annotations={"resource.kubernetes.io/pod-claim-name": "gpu-claim"},
    )
    outcome = await plugin.prepare([claim])
    (device,) = outcome.claims[claim.uid].devices
    mounts = _container_mounts(node_config, list(device.cdi_device_ids))
    read = _kubevirt_reads(mounts, f"{BASE}/resourceclaimtemplates/gpu-claim/gpu", "gpu")
    uuid = read["attributes"]["mdevUUID"]["string"]
    (created,) = [p.name for p in (sample.root / "sys/bus/mdev/devices").iterdir()]
    assert uuid == created
    assert read["document"]["podClaimName"] == "gpu-claim"
