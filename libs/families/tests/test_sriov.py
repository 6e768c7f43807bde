"""SR-IOV VFs in vfio mode on the fake kernel and netlink: attributes, prepare and its undo.

Netdevice mode (interface names, MACs) has its own module, test_sriov_netdevice.py.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from hostdev_devconfig import SriovSelector
from hostdev_events.inventory import Attribute, Device
from hostdev_families import FamilyError, HostRefused, vfio
from hostdev_families.sriov import SriovFamily
from hostdev_sysfs import HostRoot
from hostdev_testing.fakenetlink import FakeNetlink
from hostdev_testing.fakesysfs import FakeKernel, SampleHost, acceptance_host, snapshot


@pytest.fixture
def sample(tmp_path: Path) -> SampleHost:
    return acceptance_host(tmp_path / "root")


def _family(sample: SampleHost, kernel: FakeKernel, netlink: FakeNetlink) -> SriovFamily:
    return SriovFamily(HostRoot(sample.root), kernel, netlink, (SriovSelector(pf=sample.pf),))


def _vf(family: SriovFamily, address: str) -> Device:
    (vf,) = [d for d in family.discover() if d.params["address"] == address]
    return vf


def _driver(sample: SampleHost, address: str) -> str | None:
    link = sample.root / f"sys/bus/pci/devices/{address}/driver"
    return link.resolve().name if link.is_symlink() else None


def test_discovery_publishes_each_vf_with_its_pf_index_and_link(sample: SampleHost) -> None:
    """Every VF of the selected PF is offered with its PF's address and interface, its index,
    the link type, its own IDs and IOMMU group, and the VFIO nodes of that group."""
    family = _family(sample, FakeKernel(sample.root), FakeNetlink(sample.root))
    vfs = family.discover()
    assert [d.params["address"] for d in vfs] == list(sample.vfs)
    third = vfs[2]
    assert {
        k: third.attributes[k]
        for k in ("family", "pfPciBusID", "pfName", "vfIndex", "linkType", "deviceID")
    } == {
        "family": Attribute(string="sriov"),
        "pfPciBusID": Attribute(string=sample.pf),
        "pfName": Attribute(string=sample.pf_netdev),
        "vfIndex": Attribute(int_=2),
        "linkType": Attribute(string="ethernet"),
        "deviceID": Attribute(string="154c"),
    }
    assert third.attributes["iommuGroup"] == Attribute(int_=sample.vf_groups[2])
    assert third.attributes["numaNode"] == Attribute(int_=1)
    assert [n.path for n in third.edits.device_nodes] == [
        "/dev/vfio/vfio",
        f"/dev/vfio/{sample.vf_groups[2]}",
    ]


def test_vfio_prepare_with_a_vlan_and_its_undo_restore_driver_settings_and_tree(
    sample: SampleHost,
) -> None:
    """A VF on iavf goes to vfio-pci with VLAN 100 set on the PF; unprepare brings it back to
    iavf and the VLAN it had, and the sysfs tree is identical to before."""
    kernel, netlink = FakeKernel(sample.root), FakeNetlink(sample.root)
    family = _family(sample, kernel, netlink)
    address, index = sample.vfs[2], 2
    before, settings = snapshot(sample.root), netlink.get_vf(sample.pf_netdev, index)
    applied = family.apply(family.plan(_vf(family, address), "claim-1", {"vlan": 100}))
    assert _driver(sample, address) == "vfio-pci"
    assert netlink.get_vf(sample.pf_netdev, index).vlan == 100
    family.unprepare(applied)
    assert _driver(sample, address) == "iavf"
    assert netlink.get_vf(sample.pf_netdev, index) == settings
    assert snapshot(sample.root) == before


def test_a_refused_bind_leaves_the_vf_on_its_driver(sample: SampleHost) -> None:
    """The kernel refuses the driver_override write: HostRefused naming the errno, before the
    VF left iavf."""
    kernel = FakeKernel(sample.root)
    family = _family(sample, kernel, FakeNetlink(sample.root))
    before = snapshot(sample.root)
    address = sample.vfs[2]
    plan = family.plan(_vf(family, address), "claim-1", {})
    kernel.refuse(f"/sys/bus/pci/devices/{address}/driver_override", errno.EACCES)
    with pytest.raises(HostRefused, match="EACCES"):
        family.apply(plan)
    assert snapshot(sample.root) == before


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"mode": "passthrough"}, "mode 'passthrough' is not one of vfio, netdevice"),
        ({"vLan": 5}, "unknown config keys for VfConfig: vLan"),
        ({"kind": "GpuConfig"}, "config kind 'GpuConfig' is not VfConfig"),
        ({"mac": "not-a-mac"}, "is not a MAC address"),
    ],
)
def test_bad_vf_configuration_is_refused_before_any_write(
    sample: SampleHost, config: dict[str, object], reason: str
) -> None:
    """Unknown modes, misspelt keys, another kind and malformed values fail the plan with
    the reason; neither the kernel nor the PF saw a change."""
    kernel, netlink = FakeKernel(sample.root), FakeNetlink(sample.root)
    family = _family(sample, kernel, netlink)
    settings = netlink.get_vf(sample.pf_netdev, 2)
    with pytest.raises(FamilyError, match=reason):
        family.plan(_vf(family, sample.vfs[2]), "claim-1", config)
    assert kernel.writes == []
    assert netlink.get_vf(sample.pf_netdev, 2) == settings


def test_refused_vf_settings_are_not_reverted_and_the_vf_returns_to_its_driver(
    sample: SampleHost,
) -> None:
    """The PF refuses every setting of the VF: nothing was applied, so nothing is reverted
    (the PF would refuse that too), the VF is back on iavf, the tree and the PF's settings
    are as before, and HostRefused names the device."""
    kernel, netlink = FakeKernel(sample.root), FakeNetlink(sample.root)
    family = _family(sample, kernel, netlink)
    address, index = sample.vfs[2], 2
    before, settings = snapshot(sample.root), netlink.get_vf(sample.pf_netdev, index)
    plan = family.plan(_vf(family, address), "claim-1", {"vlan": 100})
    netlink.refused.add((sample.pf_netdev, index))
    with pytest.raises(HostRefused, match="VF settings refused") as refused:
        family.apply(plan)
    assert refused.value.device == plan.device
    assert "revert" not in str(refused.value)
    assert _driver(sample, address) == "iavf"
    assert netlink.get_vf(sample.pf_netdev, index) == settings
    assert snapshot(sample.root) == before


def test_a_refused_setting_reverts_only_the_settings_applied_before_it(
    sample: SampleHost,
) -> None:
    """The PF takes the MAC and refuses trust (no trust support): the MAC goes back to what
    it was, trust is left alone, the VF is back on iavf and the tree is as before."""
    kernel, netlink = FakeKernel(sample.root), FakeNetlink(sample.root)
    family = _family(sample, kernel, netlink)
    address, index = sample.vfs[2], 2
    before, settings = snapshot(sample.root), netlink.get_vf(sample.pf_netdev, index)
    config = {"mac": "52:54:00:12:34:56", "trust": True}
    plan = family.plan(_vf(family, address), "claim-1", config)
    netlink.refused_fields.add((sample.pf_netdev, index, "trust"))
    with pytest.raises(HostRefused, match="refused trust") as refused:
        family.apply(plan)
    assert refused.value.device == plan.device
    assert "revert" not in str(refused.value)
    assert _driver(sample, address) == "iavf"
    assert netlink.get_vf(sample.pf_netdev, index) == settings
    assert snapshot(sample.root) == before


def test_unprepare_returns_the_vf_to_its_driver_even_when_the_pf_refuses_the_revert(
    sample: SampleHost,
) -> None:
    """The PF refuses to put the VLAN back: the VF still leaves vfio-pci for iavf, and one
    FamilyError names the device and the refused revert; the retry, once the PF accepts,
    restores the VLAN."""
    kernel, netlink = FakeKernel(sample.root), FakeNetlink(sample.root)
    family = _family(sample, kernel, netlink)
    address, index = sample.vfs[2], 2
    before, settings = snapshot(sample.root), netlink.get_vf(sample.pf_netdev, index)
    applied = family.apply(family.plan(_vf(family, address), "claim-1", {"vlan": 100}))
    netlink.refused.add((sample.pf_netdev, index))
    with pytest.raises(FamilyError, match="could not revert VF settings") as refused:
        family.unprepare(applied)
    assert refused.value.device == applied.device
    assert _driver(sample, address) == "iavf"
    assert snapshot(sample.root) == before
    netlink.refused.clear()
    family.unprepare(applied)
    assert netlink.get_vf(sample.pf_netdev, index) == settings
    assert snapshot(sample.root) == before


def test_a_refused_release_to_the_host_driver_puts_a_netdevice_vf_back_on_vfio(
    sample: SampleHost,
) -> None:
    """A VF parked on vfio-pci is asked for as a netdevice; the kernel refuses the probe of
    its host driver after it left vfio-pci: it goes back to vfio-pci with its override, the
    tree is as before, and HostRefused names the device."""
    kernel, netlink = FakeKernel(sample.root), FakeNetlink(sample.root)
    address = sample.vfs[2]
    vfio.bind_vfio(HostRoot(sample.root), kernel, "setup", address)
    family = SriovFamily(
        HostRoot(sample.root), kernel, netlink, (SriovSelector(pf=sample.pf, mode="netdevice"),)
    )
    before = snapshot(sample.root)
    plan = family.plan(_vf(family, address), "claim-1", {})
    kernel.refuse("/sys/bus/pci/drivers_probe", errno.EIO)
    with pytest.raises(HostRefused, match="EIO") as refused:
        family.apply(plan)
    assert refused.value.device == plan.device
    assert _driver(sample, address) == "vfio-pci"
    assert snapshot(sample.root) == before
