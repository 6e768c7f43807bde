"""What health checks read in the fake tree: AER statistics, a netdev's link, device numbers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hostdev_sysfs import HostRoot, LinkState, device_number, read_aer_totals, read_links
from hostdev_testing.fakesysfs import FakeKernel, FakeSysfs, acceptance_host, snapshot

NVME = "0000:01:00.0"


def _nvme(root: Path) -> FakeSysfs:
    sysfs = FakeSysfs(root)
    sysfs.pci(NVME, vendor=0x144D, device=0xA808, class_code=0x010802, iommu_group=1)
    return sysfs


def test_aer_files_start_at_zero_in_the_kernels_format(tmp_path: Path) -> None:
    """Every named bit has a line, unnamed bits none while zero, the total comes last."""
    sysfs = _nvme(tmp_path)
    fatal = (sysfs.root / "sys/bus/pci/devices" / NVME / "aer_dev_fatal").read_text()
    lines = fatal.splitlines()
    assert lines[:3] == ["Undefined 0", "DLP 0", "SDES 0"]
    assert lines[-2:] == ["PoisonTLPBlocked 0", "TOTAL_ERR_FATAL 0"]
    assert len(lines) == 19
    assert fatal.endswith("\n")
    correctable = (sysfs.root / "sys/bus/pci/devices" / NVME / "aer_dev_correctable").read_text()
    assert correctable.splitlines()[-1] == "TOTAL_ERR_COR 0"
    assert read_aer_totals(HostRoot(sysfs.root), NVME) == {"fatal": 0, "nonfatal": 0}


def test_raised_errors_count_in_their_bit_and_the_total(tmp_path: Path) -> None:
    """Raising errors bumps the named line and the total of that severity only."""
    sysfs = _nvme(tmp_path)
    sysfs.raise_aer(NVME, "nonfatal", "CmpltTO", count=3)
    sysfs.raise_aer(NVME, "nonfatal", "UnsupReq")
    sysfs.raise_aer(NVME, "correctable", "RxErr", count=7)
    base = sysfs.root / "sys/bus/pci/devices" / NVME
    nonfatal = base.joinpath("aer_dev_nonfatal").read_text().splitlines()
    assert {"CmpltTO 3", "UnsupReq 1"} <= set(nonfatal)
    assert nonfatal[-1] == "TOTAL_ERR_NONFATAL 4"
    assert "RxErr 7" in base.joinpath("aer_dev_correctable").read_text().splitlines()
    assert read_aer_totals(HostRoot(sysfs.root), NVME) == {"fatal": 0, "nonfatal": 4}


def test_unknown_aer_errors_are_refused(tmp_path: Path) -> None:
    """An error name the register does not have is a test mistake, not a silent no-op."""
    sysfs = _nvme(tmp_path)
    with pytest.raises(ValueError, match="not a fatal AER error"):
        sysfs.raise_aer(NVME, "fatal", "RxErr")
    with pytest.raises(ValueError, match="severity"):
        sysfs.raise_aer(NVME, "deadly", "DLP")


def test_functions_without_aer_statistics_report_no_totals(tmp_path: Path) -> None:
    """No aer_dev_* files (no AER capability, old kernel): no totals, no error."""
    sysfs = _nvme(tmp_path)
    for name in ("aer_dev_fatal", "aer_dev_nonfatal"):
        (sysfs.root / "sys/bus/pci/devices" / NVME / name).unlink()
    assert read_aer_totals(HostRoot(sysfs.root), NVME) == {}


def test_pf_link_goes_down_and_up_with_its_carrier(tmp_path: Path) -> None:
    """A pulled cable: carrier 0 and operstate down under the PF's net/ directory."""
    sample = acceptance_host(tmp_path / "root")
    root = HostRoot(sample.root)
    assert read_links(root, sample.pf) == [LinkState("ens1f0", "up", True)]
    sample.sysfs.link_down("ens1f0")
    (link,) = read_links(root, sample.pf)
    assert (link, link.down) == (LinkState("ens1f0", "down", False), True)
    sample.sysfs.link_up("ens1f0")
    assert not read_links(root, sample.pf)[0].down


def test_link_states_the_kernel_reports_while_working_are_not_down() -> None:
    """operstate "unknown" with no readable carrier (many drivers) is not a link down."""
    assert not LinkState("eth0", "unknown", None).down
    assert LinkState("eth0", "lowerlayerdown", None).down
    assert LinkState("eth0", "up", False).down


def test_unbinding_the_pf_driver_takes_its_interface_away(tmp_path: Path) -> None:
    """An unbind behind the driver's back removes the netdev, as the driver's remove does."""
    sample = acceptance_host(tmp_path / "root")
    FakeKernel(sample.root).write(f"/sys/bus/pci/devices/{sample.pf}/driver/unbind", sample.pf)
    assert read_links(HostRoot(sample.root), sample.pf) == []
    assert not (sample.root / "sys/class/net/ens1f0").exists()


def test_device_nodes_carry_their_numbers_and_can_be_replaced(tmp_path: Path) -> None:
    """A numbered node is a real character device; replacing it gives a new inode with the
    new number, as udev does; stand-ins have no number."""
    sysfs = FakeSysfs(tmp_path / "root")
    sysfs.device_node("/dev/kvm", 10, 232)
    sysfs.device_node("/dev/udmabuf")
    real = sysfs.root / "dev/kvm"
    root = HostRoot(sysfs.root)
    first = real.lstat()
    assert stat.S_ISCHR(first.st_mode)
    assert device_number(root, "/dev/kvm") == "10:232"
    assert device_number(root, "/dev/udmabuf") is None
    sysfs.replace_device_node("/dev/kvm", 10, 99)
    assert device_number(root, "/dev/kvm") == "10:99"
    assert real.lstat().st_ino != first.st_ino
    assert [n for n in os.listdir(real.parent) if n.startswith(".")] == []
    with pytest.raises(FileNotFoundError):
        device_number(root, "/dev/missing")


def test_snapshots_picture_nodes_by_number_and_removal_takes_them(tmp_path: Path) -> None:
    """A snapshot never reads a node (it would reach the host's device); removing one works."""
    sysfs = FakeSysfs(tmp_path / "root")
    sysfs.device_node("/dev/net/tun", 10, 200)
    assert snapshot(sysfs.root)["dev/net/tun"] == "node:10:200"
    sysfs.tree.remove_node("/dev/net/tun")
    assert not (sysfs.root / "dev/net").exists()


def test_a_rewrite_staging_file_left_by_a_killed_writer_is_not_part_of_the_tree(
    tmp_path: Path,
) -> None:
    """`rewrite` stages the new text beside the attribute and renames it over; a process
    killed in between leaves the staging file, which no kernel has: the snapshot (what
    "nothing left behind" compares) skips it, and still sees every real change."""
    sysfs = FakeSysfs(tmp_path / "root")
    sysfs.tree.write("/sys/devices/pci0000:00/0000:01:00.0/driver_override", "(null)\n")
    before = snapshot(sysfs.root)
    attribute = sysfs.tree.path("/sys/devices/pci0000:00/0000:01:00.0/driver_override")
    left = attribute.with_name(f".fake-{os.getpid()}-1")
    left.write_text("vfio-pci\n")  # staged, never renamed: the writer was killed
    assert snapshot(sysfs.root) == before
    sysfs.tree.rewrite("/sys/devices/pci0000:00/0000:01:00.0/driver_override", "vfio-pci\n")
    after = snapshot(sysfs.root)
    assert after["sys/devices/pci0000:00/0000:01:00.0/driver_override"] == "file:vfio-pci\n"
