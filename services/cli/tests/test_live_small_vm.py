"""The live sub-commands on a node whose host is the small VM: the services scan the VM tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostdev_testing.cli import hostdev
from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.fakehost import FakeHost
from hostdev_testing.fakesysfs import small_vm
from hostdev_testing.services import NodeConfig, Services


@pytest.fixture
def fake_host(short_dir: Path) -> FakeHost:
    """The node's host is the small VM (overrides the demo host of the test kit)."""
    return FakeHost(small_vm(short_dir / "root").root)


async def test_prepare_kvm_and_list_it_on_the_small_vm(
    services: Services, node_config: NodeConfig, cluster: Cluster
) -> None:
    """/dev/kvm is prepared through the gateway; claims shows it in the VM's boot."""
    services.extra_env["HOSTDEV_BOOT_ID_FILE"] = str(
        node_config.root / "proc/sys/kernel/random/boot_id"
    )
    await services.start()
    claim = await cluster.allocated_claim("default", "vm", [Allocated("kvm", "kvm")])
    flags: list[str | Path] = [
        "--kube-api-url",
        node_config.api_url,
        "--plugins-dir",
        node_config.plugins_dir,
        "--driver",
        node_config.driver,
    ]
    prepared = await hostdev("prepare", "default/vm", *flags)
    assert prepared.code == 0, prepared.err
    header, row = prepared.out.splitlines()[1:]
    assert header.split() == ["REQUEST", "POOL", "DEVICE", "CDI", "DEVICE", "IDS"]
    assert row.split() == [
        "kvm",
        node_config.node,
        "kvm",
        f"k8s.{node_config.driver}/device={claim.uid}-kvm",
    ]
    listed = await hostdev(
        "claims",
        "--nats",
        node_config.nats_url,
        "--node",
        node_config.node,
        "--root",
        node_config.root,
        "--json",
    )
    (record,) = listed.json()
    assert record["thisBoot"] is True
    assert (await hostdev("unprepare", "default/vm", *flags)).code == 0


async def test_claims_of_a_node_without_checkpoints_says_so(node_config: NodeConfig) -> None:
    """A node nobody prepared anything on: one line, exit 0."""
    ran = await hostdev(
        "claims",
        "--nats",
        node_config.nats_url,
        "--node",
        node_config.node,
        "--root",
        node_config.root,
    )
    assert (ran.code, ran.out) == (0, "no checkpoints for this node\n")
