"""Which results and configs of a claim are ours, and the CDI spec and outcome made of them."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from hostdev_events.inventory import ContainerEdits, DeviceNodeEdit, MountEdit
from hostdev_events.plans import AnyPlan, HostPathPlan, SriovPlan
from hostdev_events.state import AllocatedDevice
from hostdev_kube import ResourceClaim
from hostdev_preparer import cdispec, reply, selection
from hostdev_preparer.errors import ClaimRejected

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
    (device,) = selection.our_devices(claim, "u1", DRIVER, "n1")
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
    with pytest.raises(ClaimRejected, match=message):
        selection.our_devices(claim, uid, DRIVER, "n1")


def test_claim_spec_has_one_cdi_device_per_device_and_minimal_version() -> None:
    """Device nodes and mounts become CDI edits; the spec declares the lowest version it needs."""
    plans = (
        HostPathPlan(
            device="kvm",
            edits=ContainerEdits(
                device_nodes=(DeviceNodeEdit(path="/dev/kvm", host_path="/r/dev/kvm"),)
            ),
        ),
        HostPathPlan(
            device="x11",
            edits=ContainerEdits(
                mounts=(MountEdit(host_path="/r/x", container_path="/x", read_only=True),)
            ),
        ),
    )
    spec = cdispec.claim_spec(DRIVER, "1b2c", plans)
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
    plans = (
        HostPathPlan(
            device="kvm",
            edits=ContainerEdits(
                device_nodes=(DeviceNodeEdit(path="/dev/kvm", host_path="/dev/kvm"),)
            ),
        ),
        HostPathPlan(device="none"),
    )
    result = reply.outcome(DRIVER, "u", devices, cdispec.claim_spec(DRIVER, "u", plans))
    assert [d.cdi_device_ids for d in result.devices] == [("k8s.hostdev.k8s.io/device=u-kvm",), ()]


def test_claim_without_edits_writes_no_spec() -> None:
    """Nothing to inject means no spec file at all."""
    assert cdispec.claim_spec(DRIVER, "u", (HostPathPlan(device="d"),)) is None


def _configured(results: list[dict[str, str]], config: list[dict[str, Any]]) -> ResourceClaim:
    """A claim as read from the API (opaque parameters stay raw JSON until matched)."""
    claim = {
        "metadata": {"name": "c", "namespace": "ns", "uid": "u1"},
        "status": {"allocation": {"devices": {"results": results, "config": config}}},
    }
    return msgspec.json.decode(msgspec.json.encode(claim), type=ResourceClaim)


def _entry(
    requests: list[str], source: str = "FromClaim", driver: str = DRIVER, **parameters: Any
) -> dict[str, Any]:
    return {
        "source": source,
        "requests": requests,
        "opaque": {"driver": driver, "parameters": parameters},
    }


@pytest.mark.parametrize(
    ("requests", "result", "applies"),
    [
        ([], "vf/netdev", True),  # no requests: every result
        (["vf/netdev"], "vf/netdev", True),  # the subrequest itself
        (["vf"], "vf/netdev", True),  # the parent: each of its subrequests
        (["vf/vfio"], "vf/netdev", False),  # a sibling subrequest
        (["vf"], "vf", True),  # a plain request
        (["vf/netdev"], "vf", False),  # a subrequest never selects a plain result
        (["nic"], "vf/netdev", False),  # another request
        (["vfx"], "vf/netdev", False),  # a name that only starts the same
        (["nic", "vf"], "vf/netdev", True),  # one of several
    ],
)
def test_config_requests_select_results_as_the_upstream_helper_does(
    requests: list[str], result: str, applies: bool
) -> None:
    """An entry selects a result when it lists no requests, the result's own reference, or
    the result's parent request; never a sibling subrequest."""
    assert selection.config_applies(requests, result) is applies


def test_subrequest_config_reaches_only_results_of_that_subrequest() -> None:
    """`vf/netdev` config lands on the `vf/netdev` result and not on `nic/fast`; the parent
    `vf` config and the unaddressed one land on both of their results."""
    claim = _configured(
        [
            {"request": "vf/netdev", "driver": DRIVER, "pool": "n1", "device": "vf-a"},
            {"request": "nic/fast", "driver": DRIVER, "pool": "n1", "device": "vf-b"},
        ],
        [
            _entry([], vlan=1),
            _entry(["vf"], trust=True),
            _entry(["vf/netdev"], mode="netdevice"),
            _entry(["nic/slow"], mode="vfio"),
        ],
    )
    configs = selection.request_configs(claim, DRIVER)
    assert configs == {
        "vf/netdev": {"vlan": 1, "trust": True, "mode": "netdevice"},
        "nic/fast": {"vlan": 1},
    }
    results = selection.our_results(claim, "u1", DRIVER, "n1")
    assert [(r, d.request, d.device) for r, d in results] == [
        ("vf/netdev", "vf", "vf-a"),
        ("nic/fast", "nic", "vf-b"),
    ]


def test_claim_config_overrides_class_config_and_later_entries_earlier_ones() -> None:
    """Class entries apply first whatever their place in the list, claim entries after
    them in order; each later entry wins key by key, a subrequest's over its parent's when
    it comes later, the parent's over the subrequest's when it does."""
    claim = _configured(
        [{"request": "vf/netdev", "driver": DRIVER, "pool": "n1", "device": "vf-a"}],
        [
            _entry(["vf/netdev"], mode="netdevice", vlan=2),
            _entry(["vf"], source="FromClass", mode="vfio", vlan=1, trust=False),
            _entry(["vf"], vlan=3),
            _entry(["vf/netdev"], source="FromClass", interfaceName="data0"),
        ],
    )
    assert selection.request_configs(claim, DRIVER)["vf/netdev"] == {
        "mode": "netdevice",
        "vlan": 3,
        "trust": False,
        "interfaceName": "data0",
    }


def test_other_drivers_config_and_results_are_ignored() -> None:
    """Another driver's entries never reach our results, nor ours its results."""
    claim = _configured(
        [
            {"request": "vf/netdev", "driver": DRIVER, "pool": "n1", "device": "vf-a"},
            {"request": "gpu", "driver": "gpu.example.com", "pool": "n1", "device": "g0"},
        ],
        [_entry([], driver="gpu.example.com", mode="vfio"), _entry(["gpu"], vlan=5)],
    )
    assert selection.request_configs(claim, DRIVER) == {"vf/netdev": {}}


def _vf_plan(device: str, mode: str, interface: str) -> SriovPlan:
    return SriovPlan(
        device=device, mode=mode, address="", pf="", pf_ifname="", vf_index=0, interface=interface
    )


def test_two_interfaces_of_one_claim_with_one_name_are_refused() -> None:
    """Two netdevice VFs asked to be one name in the container fail the claim naming both;
    a vfio VF's unused name and other families never count."""
    plans: list[AnyPlan] = [
        _vf_plan("vf-a", "netdevice", "net1"),
        _vf_plan("vf-b", "vfio", "net1"),
        HostPathPlan(device="kvm"),
    ]
    selection.check_interface_names(plans)
    with pytest.raises(ClaimRejected, match="vf-a and vf-c would both be interface 'net1'"):
        selection.check_interface_names([*plans, _vf_plan("vf-c", "netdevice", "net1")])
