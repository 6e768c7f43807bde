"""Checkpoint records: tagged plans round-trip, the version is written, a newer one is refused."""

from __future__ import annotations

import msgspec
import pytest

from hostdev_events.claims import ClaimRef
from hostdev_events.plans import (
    AnyPlan,
    FunctionDriver,
    HostPathPlan,
    MdevPlan,
    ObservedPlan,
    PciPlan,
    SriovPlan,
    UsbPlan,
    VfValues,
)
from hostdev_events.state import CHECKPOINT_VERSION, Checkpoint, ClaimStep

REF = ClaimRef(namespace="ns", name="c", uid="u1")
PLANS: list[AnyPlan] = [
    HostPathPlan(device="kvm"),
    UsbPlan(device="usb-1", port="1-1", busnum=1, devnum=3, node="/dev/bus/usb/001/003"),
    PciPlan(
        device="pci-1", group=12, members=(FunctionDriver(address="0000:01:00.0", driver="nvme"),)
    ),
    SriovPlan(
        device="vf-1",
        mode="netdevice",
        address="0000:3b:02.2",
        pf="0000:3b:00.0",
        pf_ifname="ens1f0",
        vf_index=2,
        want=VfValues(vlan=100),
        was=VfValues(vlan=0, trust=False),
    ),
    MdevPlan(device="mdev-1", parent="0000:00:02.0", type="i915-GVTg_V5_4", uuid="b85d", group=0),
    ObservedPlan(device="pci-2", of="pci"),
]


def test_each_plan_is_stored_with_its_family_tag_and_read_back_as_its_type() -> None:
    """Every plan type survives the KV encoding, tagged by family; observed plans keep the
    family of the device they watch."""
    record = Checkpoint(claim=REF, step=ClaimStep.PREPARING, plans=tuple(PLANS))
    encoded = msgspec.json.encode(record)
    stored = msgspec.json.decode(encoded)
    assert stored["version"] == CHECKPOINT_VERSION
    assert [p["family"] for p in stored["plans"]] == [
        "hostpath",
        "usb",
        "pci",
        "sriov",
        "mdev",
        "observed",
    ]
    assert "undo" not in stored
    back = msgspec.json.decode(encoded, type=Checkpoint)
    assert back == record
    assert [p.family for p in back.plans] == ["hostpath", "usb", "pci", "sriov", "mdev", "pci"]
    assert [p.observe_only for p in back.plans] == [False] * 5 + [True]


def test_record_of_a_newer_version_is_refused_not_guessed_at() -> None:
    """A rollback to this release meets a record it cannot know the meaning of: it fails."""
    newer = {
        "version": CHECKPOINT_VERSION + 1,
        "claim": msgspec.to_builtins(REF),
        "step": "completed",
    }
    with pytest.raises(msgspec.ValidationError, match="newer than this driver's"):
        msgspec.json.decode(msgspec.json.encode(newer), type=Checkpoint)


def test_version_1_plan_of_an_unknown_family_is_refused() -> None:
    """A version-1 record is translated family by family; one it cannot translate fails."""
    old = {
        "claim": msgspec.to_builtins(REF),
        "step": "completed",
        "undo": [{"device": "x", "family": "gpu", "data": {"a": "b"}}],
    }
    with pytest.raises(msgspec.ValidationError, match="unknown family 'gpu'"):
        msgspec.json.decode(msgspec.json.encode(old), type=Checkpoint)
