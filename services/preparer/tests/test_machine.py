"""The claim state machine's decisions, without any I/O."""

from __future__ import annotations

import msgspec
import pytest

from hostdev_events.inventory import ContainerEdits, DeviceNodeEdit, MountEdit
from hostdev_events.state import AllocatedDevice, HostUndo
from hostdev_kube import ResourceClaim
from hostdev_preparer import machine

DRIVER = "hostdev.k8s.io"


def _claim(uid: str, results: list[dict[str, str]], allocated: bool = True) -> ResourceClaim:
    status = {"allocation": {"devices": {"results": results}}} if allocated else {}
    return msgspec.convert(
        {"metadata": {"name": "c", "namespace": "ns", "uid": uid}, "status": status}, ResourceClaim
    )


def test_only_this_drivers_results_are_taken_and_subrequests_stripped() -> None:
    """Other drivers' results are skipped; `req/sub` becomes `req`."""
    claim = _claim(
        "u1",
        [
            {"request": "gpu/fast", "driver": DRIVER, "pool": "n1", "device": "kvm"},
            {"request": "nic", "driver": "nic.example.com", "pool": "n1", "device": "eth0"},
        ],
    )
    (device,) = machine.our_devices(claim, "u1", DRIVER, "n1")
    assert (device.request, device.device, device.pool) == ("gpu", "kvm", "n1")


@pytest.mark.parametrize(
    ("uid", "allocated", "pool", "message"),
    [
        ("other", True, "n1", "replaced"),
        ("u1", False, "n1", "not allocated"),
        ("u1", True, "n2", "pool"),
    ],
)
def test_claims_that_cannot_be_prepared_here_are_rejected(
    uid: str, allocated: bool, pool: str, message: str
) -> None:
    """Replaced, unallocated, or other-node claims are rejected with a reason."""
    claim = _claim(
        "u1", [{"request": "r", "driver": DRIVER, "pool": pool, "device": "kvm"}], allocated
    )
    with pytest.raises(machine.ClaimRejected, match=message):
        machine.our_devices(claim, uid, DRIVER, "n1")


def test_claim_spec_has_one_cdi_device_per_device_and_minimal_version() -> None:
    """Device nodes and mounts become CDI edits; the spec declares the lowest version it needs."""
    undo = (
        HostUndo(
            device="kvm",
            family="hostpath",
            edits=ContainerEdits(
                device_nodes=(DeviceNodeEdit(path="/dev/kvm", host_path="/r/dev/kvm"),)
            ),
        ),
        HostUndo(
            device="x11",
            family="hostpath",
            edits=ContainerEdits(
                mounts=(MountEdit(host_path="/r/x", container_path="/x", read_only=True),)
            ),
        ),
    )
    spec = machine.claim_spec(DRIVER, "1b2c", undo)
    assert spec is not None
    assert spec.cdi_version == "0.5.0"
    assert [d.name for d in spec.devices] == ["1b2c-kvm", "1b2c-x11"]
    mount = spec.devices[1].container_edits.mounts[0]
    assert mount.options[0] == "ro"
    assert mount.type == "bind"


def test_outcome_lists_cdi_ids_only_for_devices_with_edits() -> None:
    """A device that injects nothing is returned without CDI IDs."""
    devices = [
        AllocatedDevice(request="r", pool="n1", device="kvm"),
        AllocatedDevice(request="r", pool="n1", device="none"),
    ]
    undo = (
        HostUndo(
            device="kvm",
            family="hostpath",
            edits=ContainerEdits(
                device_nodes=(DeviceNodeEdit(path="/dev/kvm", host_path="/dev/kvm"),)
            ),
        ),
        HostUndo(device="none", family="hostpath"),
    )
    result = machine.outcome(DRIVER, "u", devices, machine.claim_spec(DRIVER, "u", undo))
    assert [d.cdi_device_ids for d in result.devices] == [("k8s.hostdev.k8s.io/device=u-kvm",), ()]


def test_claim_without_edits_writes_no_spec() -> None:
    """Nothing to inject means no spec file at all."""
    assert machine.claim_spec(DRIVER, "u", (HostUndo(device="d", family="f"),)) is None
