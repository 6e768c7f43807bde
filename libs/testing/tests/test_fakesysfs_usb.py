"""USB devices in the fake tree look like the kernel's and disappear completely on unplug."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostdev_testing.fakesysfs import FakeSysfs, SampleHost, acceptance_host, snapshot

XHCI = "sys/devices/pci0000:00/0000:00:14.0"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> SampleHost:
    """The acceptance host, shared by the tests that only read it."""
    return acceptance_host(tmp_path_factory.mktemp("host"))


@pytest.fixture
def fresh_host(tmp_path: Path) -> SampleHost:
    """The acceptance host for a test that changes it."""
    return acceptance_host(tmp_path / "host")


def test_usb_bus_link_points_under_the_controller(host: SampleHost) -> None:
    """/sys/bus/usb/devices/<port> is a relative link below the xHCI root hub."""
    assert os.readlink(host.root / "sys/bus/usb/devices/1-1") == f"../../../{XHCI[4:]}/usb1/1-1"


def test_usb_device_attributes_use_the_kernels_formats(host: SampleHost) -> None:
    """IDs are four hex digits without 0x, bus and device numbers decimal."""
    device = host.root / XHCI / "usb1/1-1"
    assert (device / "idVendor").read_text() == "046d\n"
    assert (device / "idProduct").read_text() == "c52b\n"
    assert (device / "busnum").read_text() == "1\n"
    assert (device / "devnum").read_text() == "3\n"
    assert not (device / "serial").exists()


def test_usb_uevent_names_the_usbfs_node(host: SampleHost) -> None:
    """uevent carries the major/minor, DEVNAME and an unpadded PRODUCT."""
    uevent = (host.root / XHCI / "usb2/2-3/uevent").read_text().splitlines()
    assert "MAJOR=189" in uevent
    assert "MINOR=131" in uevent
    assert "DEVNAME=bus/usb/002/004" in uevent
    assert "PRODUCT=781/5581/100" in uevent
    assert (host.root / "dev/bus/usb/002/004").is_file()


def test_usb_interface_has_no_id_vendor(host: SampleHost) -> None:
    """Interfaces are linked on the bus too but carry no idVendor, so readers can skip them."""
    interface = host.root / "sys/bus/usb/devices/2-3:1.0"
    assert interface.is_dir()
    assert not (interface / "idVendor").exists()


def test_identical_sticks_differ_only_by_serial(host: SampleHost) -> None:
    """The two SanDisk sticks share vendor and product but not their serials."""
    first, second = (host.root / "sys/bus/usb/devices" / port for port in host.usb_sticks)
    assert (first / "idProduct").read_text() == (second / "idProduct").read_text()
    assert (first / "serial").read_text() != (second / "serial").read_text()


def test_unplug_removes_device_links_and_node(fresh_host: SampleHost) -> None:
    """After unplug nothing in the tree mentions the port or its usbfs node."""
    fresh_host.sysfs.unplug_usb("2-3")
    picture = snapshot(fresh_host.root)
    assert not any("2-3" in key or "2-3" in value for key, value in picture.items())
    assert "dev/bus/usb/002/004" not in picture
    assert "dev/bus/usb/002/005" in picture


def test_unplug_then_replug_restores_the_tree(tmp_path: Path) -> None:
    """Plugging the same device back gives the very same tree."""
    sysfs = FakeSysfs(tmp_path)
    sysfs.usb("1-2", busnum=1, devnum=2, vendor=0x046D, product=0xC52B)
    before = snapshot(tmp_path)
    sysfs.usb("1-1", busnum=1, devnum=3, vendor=0x0781, product=0x5581, serial="A1")
    sysfs.unplug_usb("1-1")
    assert snapshot(tmp_path) == before


def test_device_behind_a_hub_nests_under_it(tmp_path: Path) -> None:
    """A port path like 1-1.2 lives inside its hub's directory and goes with the hub."""
    sysfs = FakeSysfs(tmp_path)
    sysfs.usb("1-1", busnum=1, devnum=2, vendor="05e3", product="0610", interface_class="09")
    sysfs.usb("1-1.2", busnum=1, devnum=3, vendor="046d", product="c52b")
    assert os.readlink(tmp_path / "sys/bus/usb/devices/1-1.2").endswith("/usb1/1-1/1-1.2")
    sysfs.unplug_usb("1-1")
    assert not (tmp_path / "dev/bus/usb/001/003").exists()
    assert not os.path.lexists(tmp_path / "sys/bus/usb/devices/1-1.2")


def test_usb_rejects_a_port_on_another_bus(tmp_path: Path) -> None:
    """The bus number in the port path must match busnum."""
    with pytest.raises(ValueError, match="not on bus"):
        FakeSysfs(tmp_path).usb("2-1", busnum=1, devnum=2, vendor=1, product=2)
