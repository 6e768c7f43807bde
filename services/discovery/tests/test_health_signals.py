"""Each health signal on the fake kernel, through the real families and the debouncing tracker:
unhealthy with its message, and back, scan after scan on a moved clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hostdev_devconfig import DevicesConfig, HostPathSpec, PciSelector, SriovSelector
from hostdev_discovery.health import HealthTracker
from hostdev_events.inventory import Device, HealthChange
from hostdev_families import Family, Health, build_families, discover_all
from hostdev_sysfs import HostRoot
from hostdev_testing.fakenetlink import FakeNetlink
from hostdev_testing.fakesysfs import FakeKernel, SampleHost, acceptance_host

NVME = "pci-0000-01-00-0"
VFS = ("vf-0000-3b-02-0", "vf-0000-3b-02-1", "vf-0000-3b-02-2", "vf-0000-3b-02-3")
DEBOUNCE = 2.0
QUIET = 10.0


@dataclass
class Node:
    """Discovery's view of the sample host: families, tracker, and a clock the test moves."""

    sample: SampleHost
    families: dict[str, Family]
    tracker: HealthTracker = field(
        default_factory=lambda: HealthTracker(DEBOUNCE, gone_seconds=300, quiet_seconds=QUIET)
    )
    changes: list[HealthChange] = field(default_factory=list)

    def _check(self, device: Device) -> Health:
        return self.families[device.family].healthy(device)

    def scan(self, now: float) -> dict[str, Device]:
        """One discovery pass at `now`: the published devices by name."""
        devices, changes = self.tracker.update(now, discover_all(self.families), self._check)
        self.changes += changes
        return {d.name: d for d in devices}

    def health(self, now: float, name: str) -> tuple[bool, str]:
        device = self.scan(now)[name]
        return device.healthy, device.health_message


@pytest.fixture
def node(tmp_path: Path) -> Node:
    sample = acceptance_host(tmp_path / "root")
    # /dev/kvm as the kernel makes it: a character device, misc major 10, minor 232.
    sample.sysfs.replace_device_node("/dev/kvm", 10, 232)
    config = DevicesConfig(
        host_paths=(HostPathSpec(path="/dev/kvm", name="kvm", shared=True),),
        # The NVMe shares its IOMMU group with the AHCI controller: opt in.
        pci=(PciSelector(vendor="144d", device="a808", whole_group=True),),
        sriov=(SriovSelector(pf="0000:3b:00.0"),),
    )
    families = build_families(
        config, HostRoot(sample.root), FakeKernel(sample.root), FakeNetlink(sample.root)
    )
    return Node(sample, families)


@pytest.mark.parametrize(
    ("severity", "error", "message"),
    [
        ("fatal", "DLP", "AER fatal errors rose from 0 to 2"),
        ("nonfatal", "CmpltTO", "AER non-fatal errors rose from 0 to 2"),
    ],
)
def test_rising_aer_counters_mark_the_function_unhealthy_until_they_stay_quiet(
    node: Node, severity: str, error: str, message: str
) -> None:
    """A rise is published after the debounce, with its message; the function is healthy
    again once the counters stayed unchanged for the quiet period, then the debounce."""
    assert node.health(0, NVME) == (True, "")
    node.sample.sysfs.raise_aer(node.sample.nvme, severity, error, count=2)
    assert node.health(1, NVME) == (True, "")  # observed, not yet held for the debounce
    assert node.health(3, NVME) == (False, message)
    assert node.changes == [HealthChange(device=NVME, healthy=False, message=message)]
    assert node.health(10, NVME) == (False, message)  # 9 s since the rise: not quiet yet
    assert node.health(11, NVME) == (False, message)  # quiet now; the debounce runs
    assert node.health(13, NVME) == (True, "")
    assert node.changes[-1] == HealthChange(device=NVME, healthy=True, message="")


def test_aer_counts_from_before_the_first_scan_are_not_an_error(node: Node) -> None:
    """Errors counted before discovery started are the reference, not a fault."""
    node.sample.sysfs.raise_aer(node.sample.nvme, "fatal", "SDES", count=5)
    assert node.health(0, NVME) == (True, "")
    assert node.health(5, NVME) == (True, "")
    node.sample.sysfs.raise_aer(node.sample.nvme, "fatal", "SDES")
    node.scan(6)
    assert node.health(8, NVME) == (False, "AER fatal errors rose from 5 to 6")


def test_a_rise_is_published_even_when_the_quiet_period_is_shorter_than_the_debounce(
    node: Node,
) -> None:
    """One rise is held until it has been told, however short the quiet period: a fault the
    debounce swallowed would never reach anyone."""
    node.tracker.quiet_seconds = 1.0
    node.scan(0)
    node.sample.sysfs.raise_aer(node.sample.nvme, "nonfatal", "UnsupReq")
    assert node.health(5, NVME) == (True, "")
    assert node.health(6.5, NVME) == (True, "")  # quiet for 1.5 s, but nobody was told yet
    assert node.health(7, NVME) == (False, "AER non-fatal errors rose from 0 to 1")
    node.scan(8)
    assert node.health(10, NVME) == (True, "")


def test_function_whose_driver_vanished_is_unhealthy_until_it_is_bound_again(node: Node) -> None:
    """Unbinding nvme behind the driver's back marks the function unhealthy; the kernel
    probing it again brings it back."""
    kernel = FakeKernel(node.sample.root)
    nvme = node.sample.nvme
    node.scan(0)
    kernel.write(f"/sys/bus/pci/devices/{nvme}/driver/unbind", nvme)
    node.scan(1)
    assert node.health(3, NVME) == (False, f"{nvme} lost its driver nvme")
    kernel.write("/sys/bus/pci/drivers_probe", nvme)
    node.scan(4)
    assert node.health(6, NVME) == (True, "")


def test_function_moved_to_vfio_by_a_claim_has_not_vanished(node: Node) -> None:
    """A prepare moving the group to vfio-pci and back never makes the function unhealthy,
    scanned at every step of the way."""
    family = node.families["pci"]
    kernel = FakeKernel(node.sample.root)
    nvme = node.sample.nvme
    plan = family.plan(node.scan(0)[NVME], "claim-uid", {})
    # Where a prepare waits while the old driver's remove runs: override set, no driver yet.
    kernel.write(f"/sys/bus/pci/devices/{nvme}/driver_override", "vfio-pci")
    kernel.write(f"/sys/bus/pci/devices/{nvme}/driver/unbind", nvme)
    node.scan(1)
    assert node.health(4, NVME) == (True, "")  # past the debounce: not a loss
    family.apply(plan)
    assert node.scan(6)[NVME].attributes["hostDriver"].string == "vfio-pci"
    family.unprepare(plan)
    devices = node.scan(9)
    assert (devices[NVME].healthy, devices[NVME].attributes["hostDriver"].string) == (True, "nvme")
    assert node.changes == []


def test_pf_link_down_marks_its_vfs_unhealthy_until_the_link_is_back(node: Node) -> None:
    """Pulling the PF's cable makes every VF unhealthy with the PF's name; the carrier
    coming back makes them healthy again."""
    node.scan(0)
    node.sample.sysfs.link_down(node.sample.pf_netdev)
    node.scan(1)
    devices = node.scan(3)
    message = "PF ens1f0 link down (no carrier)"
    assert {(devices[vf].healthy, devices[vf].health_message) for vf in VFS} == {(False, message)}
    assert devices[NVME].healthy
    node.sample.sysfs.link_up(node.sample.pf_netdev)
    node.scan(4)
    devices = node.scan(6)
    assert all(devices[vf].healthy and not devices[vf].health_message for vf in VFS)


def test_link_flap_within_the_debounce_is_not_published(node: Node) -> None:
    """Down and up again before the debounce ends: no change is announced."""
    node.scan(0)
    node.sample.sysfs.link_down(node.sample.pf_netdev)
    node.scan(1)
    node.sample.sysfs.link_up(node.sample.pf_netdev)
    node.scan(2)
    node.scan(5)
    assert node.changes == []


def test_pf_aer_errors_count_against_its_vfs(node: Node) -> None:
    """A fatal error on the PF disrupts every VF behind it."""
    node.scan(0)
    node.sample.sysfs.raise_aer(node.sample.pf, "fatal", "MalfTLP")
    node.scan(1)
    healthy, message = node.health(3, VFS[2])
    assert (healthy, message) == (False, "PF 0000:3b:00.0 AER fatal errors rose from 0 to 1")


def test_device_node_with_another_number_is_unhealthy_until_it_matches_again(
    node: Node,
) -> None:
    """/dev/kvm recreated as 10:99 no longer is the node discovery found; recreated as
    10:232 it is again."""
    assert node.scan(0)["kvm"].params["discovered.rdev"] == "10:232"
    node.sample.sysfs.replace_device_node("/dev/kvm", 10, 99)
    node.scan(1)
    devices = node.scan(3)
    assert (devices["kvm"].healthy, devices["kvm"].health_message) == (
        False,
        "/dev/kvm is now 10:99, was 10:232",
    )
    assert devices["kvm"].params["discovered.rdev"] == "10:232"  # what discovery found stays
    node.sample.sysfs.replace_device_node("/dev/kvm", 10, 232)
    node.scan(4)
    assert node.health(6, "kvm") == (True, "")
