"""Checkpoints written by the previous release (version 1) are read and undone after an upgrade.

The fixtures in fixtures/checkpoint-v1 are the KV values the version-1 preparer wrote for a
prepared claim of each family, captured from these flows, with what differs per run (claim
UID, pool, boot ID, host root, mdev UUID) made a placeholder. Each test prepares the same
claim with this release, puts the version-1 record in place of the one just written (as
if the claim had been prepared before the upgrade), and checks that a repeated prepare
answers the old record and that unprepare restores the host exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hostdev_bus import NatsKv
from hostdev_events import subjects
from hostdev_events.plans import MdevPlan, SriovPlan
from hostdev_events.state import CHECKPOINT_VERSION, Checkpoint
from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.fakehost import FakeHost
from hostdev_testing.fakenetlink import FakeNetlink
from hostdev_testing.fakesysfs import SampleHost, snapshot
from hostdev_testing.kubelet import KubeletSimulator
from hostdev_testing.services import NodeConfig, Services

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoint-v1"
CONFIG: dict[str, Any] = {
    "pci": [{"vendor": "144d", "device": "a808", "wholeGroup": True}],
    "sriov": [{"pf": "0000:3b:00.0"}],
    "mdev": [{"parent": "0000:00:02.0"}],
    "usb": [{"vendor": "0781"}, {"vendor": "046d"}],
    "hostPaths": [{"path": "/dev/kvm", "name": "kvm", "shared": True}],
}
NETDEVICE = {
    "mode": "netdevice",
    "vlan": 100,
    "mac": "52:54:00:12:34:56",
    "trust": True,
    "interfaceName": "net1",
}
# What each fixture's claim was allocated, and its opaque config, as when it was captured.
CASES: dict[str, tuple[Allocated, dict[str, Any] | None]] = {
    "hostpath": (Allocated("kvm", "kvm"), None),
    "pci": (Allocated("nvme", "pci-0000-01-00-0"), None),
    "sriov-vfio": (Allocated("vf", "vf-0000-3b-02-2"), None),
    "sriov-netdevice": (Allocated("vf", "vf-0000-3b-02-2"), NETDEVICE),
    "mdev": (Allocated("gpu", "mdev-0000-00-02-0-i915-gvtg-v5-4-0"), None),
    "usb": (Allocated("usb", "usb-046d-c52b-port-1-1"), None),
}


@pytest.fixture
def fake_host(sample: SampleHost) -> FakeHost:
    """This module's host tree is the acceptance host."""
    return FakeHost(sample.root)


def _v1_record(case: str, fill: dict[str, str]) -> bytes:
    text = (FIXTURES / f"{case}.json").read_text()
    for name, value in fill.items():
        text = text.replace("{" + name + "}", value)
    assert "{" + "claim_uid}" not in text
    return json.dumps(json.loads(text), separators=(",", ":")).encode()


def test_every_family_has_a_version_1_fixture() -> None:
    """The fixtures cover each family (and both VF modes) the upgrade must read."""
    assert {p.stem for p in FIXTURES.glob("*.json")} == set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
async def test_version_1_checkpoint_is_answered_and_undone_after_the_upgrade(
    case: str,
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    sample: SampleHost,
) -> None:
    """A claim prepared by version 1 gets its recorded answer again, and unprepare from the
    version-1 record puts the host tree (and VF settings) back as they were."""
    node_config.devices_config.write_text(json.dumps(CONFIG))
    await services.start()
    plugin = await kubelet.wait_for_driver(node_config.driver, timeout=10)
    netlink = FakeNetlink(sample.root)
    before = snapshot(sample.root)
    allocated, config = CASES[case]
    claim = await cluster.allocated_claim(
        "vms", case, [allocated], namespace_create=True, config=config
    )
    assert (await plugin.prepare([claim])).kubelet_failure is None

    js = services.nc.jetstream()
    key = subjects.checkpoint_key(node_config.node, claim.uid)
    store = await NatsKv.open(js, subjects.CHECKPOINT_BUCKET, Checkpoint)
    found = await store.get(key)
    assert found is not None
    written = found[0]
    assert written.version == CHECKPOINT_VERSION
    (plan,) = written.plans
    fill = {
        "claim_uid": claim.uid,
        "pool": node_config.node,
        "boot_id": written.boot_id,
        "root": str(sample.root),
        "mdev_uuid": plan.uuid if isinstance(plan, MdevPlan) else "",
    }
    await (await js.key_value(subjects.CHECKPOINT_BUCKET)).put(key, _v1_record(case, fill))
    # The upgrade: this release's preparer starts on the node version 1 left behind.
    await services.stop("preparer")
    await services.start("preparer")
    upgraded = await store.get(key)
    assert upgraded is not None
    assert type(upgraded[0].plans[0]) is type(plan)
    if isinstance(plan, SriovPlan):
        assert upgraded[0].plans[0] == plan  # every VF field read back as this release wrote it

    again = await plugin.prepare([claim])
    assert again.kubelet_failure is None
    (device,) = again.claims[claim.uid].devices
    recorded = upgraded[0].outcome
    assert recorded is not None
    assert tuple(device.cdi_device_ids) == recorded.devices[0].cdi_device_ids

    assert (await plugin.unprepare([claim])).kubelet_failure is None
    assert await store.get(key) is None
    assert snapshot(sample.root) == before
    if case == "sriov-netdevice":
        reverted = netlink.get_vf("ens1f0", 2)
        assert (reverted.vlan, reverted.mac, reverted.trust) == (0, "00:00:00:00:00:00", False)
