"""After a node reboot, a prepare of a claim completed before it is done again, not skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.fakehost import FakeHost
from hostdev_testing.fakesysfs import FakeKernel, SampleHost
from hostdev_testing.kubelet import KubeletSimulator
from hostdev_testing.services import NodeConfig, Services


def _reboot(sample: SampleHost) -> None:
    """What a reboot leaves: every function of the NVMe's group on its own driver again."""
    kernel = FakeKernel(sample.root)
    for bdf in (sample.nvme, sample.nvme_sibling):
        kernel.write(f"/sys/bus/pci/devices/{bdf}/driver/unbind", bdf)
        kernel.write(f"/sys/bus/pci/devices/{bdf}/driver_override", "\n")
        kernel.write("/sys/bus/pci/drivers_probe", bdf)


def _driver(sample: SampleHost) -> str:
    return (sample.root / f"sys/bus/pci/devices/{sample.nvme}/driver").resolve().name


async def test_prepare_after_reboot_rewrites_specs_and_rebinds(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
    short_dir: Path,
) -> None:
    """The CDI directory (tmpfs) is empty after a reboot and the kernel forgot the vfio
    binding; the kubelet's repeated prepare must bring both back with the same answer."""
    boot_id = short_dir / "boot_id"
    boot_id.write_text("boot-1\n")
    services.extra_env["HOSTDEV_BOOT_ID_FILE"] = str(boot_id)
    node_config.devices_config.write_text('{"pci": [{"vendor": "144d", "wholeGroup": true}]}')
    await services.start()
    plugin = await kubelet.wait_for_driver(node_config.driver, timeout=10)
    claim = await cluster.allocated_claim(
        "default", "survivor", [Allocated("nvme", "pci-0000-01-00-0")]
    )
    first = await plugin.prepare([claim])
    spec = node_config.cdi_root / f"k8s.{node_config.driver}-device_{claim.uid}.json"
    assert spec.exists()
    assert _driver(sample) == "vfio-pci"

    spec.unlink()  # the reboot: tmpfs is empty again ...
    _reboot(sample)  # ... and the functions are back on their own drivers
    assert _driver(sample) == "nvme"
    boot_id.write_text("boot-2\n")
    await services.stop("preparer")
    await services.start("preparer")
    again = await plugin.prepare([claim])
    assert again.claims == first.claims
    assert spec.exists()
    assert _driver(sample) == "vfio-pci"
    assert (await plugin.unprepare([claim])).kubelet_failure is None
    assert _driver(sample) == "nvme"


@pytest.fixture
def fake_host(sample: SampleHost) -> FakeHost:
    """This module's host tree is the acceptance host (it has /dev/kvm and the NVMe)."""
    return FakeHost(sample.root)


async def test_prepare_in_the_same_boot_is_answered_from_the_checkpoint(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
    short_dir: Path,
) -> None:
    """Without a reboot the recorded answer is returned and the host is not touched again."""
    boot_id = short_dir / "boot_id"
    boot_id.write_text("boot-1\n")
    services.extra_env["HOSTDEV_BOOT_ID_FILE"] = str(boot_id)
    node_config.devices_config.write_text('{"pci": [{"vendor": "144d", "wholeGroup": true}]}')
    await services.start()
    plugin = await kubelet.wait_for_driver(node_config.driver, timeout=10)
    claim = await cluster.allocated_claim(
        "default", "nvme", [Allocated("nvme", "pci-0000-01-00-0")]
    )
    assert (await plugin.prepare([claim])).kubelet_failure is None
    spec = node_config.cdi_root / f"k8s.{node_config.driver}-device_{claim.uid}.json"
    spec.unlink()  # not a reboot: a repeated prepare trusts its record
    assert (await plugin.prepare([claim])).kubelet_failure is None
    assert not spec.exists()
