"""SR-IOV VFs handed over as network interfaces: their names in the container and their MAC."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostdev_devconfig import SriovSelector
from hostdev_events.inventory import Device
from hostdev_families import FamilyError
from hostdev_families.sriov import (
    SriovFamily,
    container_interface,
    default_interface_name,
    handed_mac,
    interface_name_error,
)
from hostdev_sysfs import HostRoot
from hostdev_testing.fakenetlink import FakeNetlink
from hostdev_testing.fakesysfs import FakeKernel, SampleHost, acceptance_host


@pytest.fixture
def sample(tmp_path: Path) -> SampleHost:
    return acceptance_host(tmp_path / "root")


def _family(sample: SampleHost) -> SriovFamily:
    return SriovFamily(
        HostRoot(sample.root),
        FakeKernel(sample.root),
        FakeNetlink(sample.root),
        (SriovSelector(pf=sample.pf, mode="netdevice"),),
    )


def _vfs(family: SriovFamily) -> dict[str, Device]:
    return {d.params["address"]: d for d in family.discover()}


def test_default_names_are_unique_per_vf_and_fit_the_kernel_limit() -> None:
    """The default is the VF's PCI address after `vf`, the DRA device name: distinct for
    every VF of the node, so of any claim or pod; a wide PCI domain still fits 15 bytes."""
    names = [default_interface_name(f"0000:3b:02.{fn}") for fn in range(4)]
    assert names == ["vf-0000-3b-02-0", "vf-0000-3b-02-1", "vf-0000-3b-02-2", "vf-0000-3b-02-3"]
    wide = default_interface_name("10000:e1:00.7")
    assert wide == "vf10000e1007"
    assert all(interface_name_error(n) is None for n in [*names, wide])


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("net1", None),
        ("data-0.100", None),
        ("a" * 15, None),
        ("a" * 16, "longer than 15"),
        ("", "non-empty"),
        (".", "may not be"),
        ("..", "may not be"),
        ("net/1", "without /"),
        ("net:1", "without /"),
        ("net 1", "whitespace"),
        ("net\t1", "whitespace"),
        ("nét1", "printable ASCII"),
        (7, "non-empty string"),
    ],
)
def test_interface_names_follow_the_kernels_rules(name: object, reason: str | None) -> None:
    """Names the kernel would refuse (dev_valid_name) are refused with the rule they break."""
    error = interface_name_error(name)
    if reason is None:
        assert error is None
    else:
        assert error is not None
        assert reason in error


def test_two_vfs_of_one_claim_get_two_names_by_default(sample: SampleHost) -> None:
    """Two netdevice VFs prepared without interfaceName hand over two different names, each
    the one its plan asked for."""
    family = _family(sample)
    vfs = _vfs(family)
    applied = [
        family.apply(family.plan(vfs[address], "claim-1", {})) for address in sample.netdev_vfs
    ]
    names = [p.edits.net_devices[0].name for p in applied]
    assert names == [default_interface_name(a) for a in sample.netdev_vfs]
    assert len(set(names)) == 2
    assert [container_interface(p) for p in applied] == names
    for plan in applied:
        family.unprepare(plan)


def test_a_bad_interface_name_is_refused_before_anything_is_done(sample: SampleHost) -> None:
    """interfaceName `eth/0` fails the plan with the reason; nothing was written."""
    family = _family(sample)
    kernel = FakeKernel(sample.root)
    device = _vfs(family)[sample.netdev_vfs[0]]
    with pytest.raises(FamilyError, match="interfaceName 'eth/0' may contain only"):
        family.plan(device, "claim-1", {"interfaceName": "eth/0"})
    assert kernel.writes == []


def test_the_mac_reported_is_the_one_set_or_else_the_one_read(sample: SampleHost) -> None:
    """With `mac` in config the handed-over MAC is that one; without, the interface's own as
    the kernel shows it at prepare."""
    family = _family(sample)
    vfs = _vfs(family)
    first, second = sample.netdev_vfs
    set_plan = family.apply(family.plan(vfs[first], "c1", {"mac": "52:54:00:AA:BB:CC"}))
    assert handed_mac(set_plan) == "52:54:00:aa:bb:cc"
    read_plan = family.apply(family.plan(vfs[second], "c2", {}))
    host_interface = read_plan.edits.net_devices[0].host_interface_name
    on_host = (sample.root / f"sys/class/net/{host_interface}/address").read_text().strip()
    assert handed_mac(read_plan) == on_host
    for plan in (set_plan, read_plan):
        family.unprepare(plan)


def test_vfio_mode_hands_over_no_interface(sample: SampleHost) -> None:
    """A VF in vfio mode asks for no name in the container, whatever interfaceName says."""
    family = _family(sample)
    plan = family.plan(_vfs(family)[sample.netdev_vfs[0]], "c1", {"mode": "vfio"})
    assert container_interface(plan) is None


def test_an_all_zero_mac_is_not_reported(sample: SampleHost) -> None:
    """An interface without an address yet (all zeros) hands over no MAC to report."""
    family = _family(sample)
    device = _vfs(family)[sample.netdev_vfs[0]]
    interface = _host_interface(sample, device)
    (sample.root / f"sys/class/net/{interface}/address").write_text("00:00:00:00:00:00\n")
    plan = family.apply(family.plan(device, "c1", {}))
    assert handed_mac(plan) is None
    family.unprepare(plan)


def _host_interface(sample: SampleHost, device: Device) -> str:
    """The VF's interface name on the host, as sysfs lists it under the function."""
    (name,) = (sample.root / f"sys/bus/pci/devices/{device.params['address']}/net").iterdir()
    return name.name
