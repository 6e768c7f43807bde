"""USB devices on a fake host: names that survive replugging, and a prepare that writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostdev_devconfig import UsbSelector
from hostdev_events.inventory import Attribute, Device
from hostdev_families import FamilyError
from hostdev_families.usb import UsbFamily
from hostdev_sysfs import HostRoot
from hostdev_testing.fakesysfs import SampleHost, acceptance_host, snapshot


@pytest.fixture
def sample(tmp_path: Path) -> SampleHost:
    return acceptance_host(tmp_path / "root")


def _devices(sample: SampleHost, *selectors: UsbSelector) -> dict[str, Device]:
    family = UsbFamily(HostRoot(sample.root), selectors or (UsbSelector(),))
    return {d.params["port"]: d for d in family.discover()}


def test_discovery_publishes_ids_strings_and_the_bus_node(sample: SampleHost) -> None:
    """A stick is published with its IDs, serial, trimmed strings, bus position and port,
    and hands over its /dev/bus/usb node."""
    stick = _devices(sample)[sample.usb_sticks[0]]
    busnum, devnum = sample.usb_bus_dev[sample.usb_sticks[0]]
    assert stick.attributes == {
        "family": Attribute(string="usb"),
        "vendorID": Attribute(string="0781"),
        "productID": Attribute(string="5581"),
        "port": Attribute(string=sample.usb_sticks[0]),
        "busnum": Attribute(int_=busnum),
        "devnum": Attribute(int_=devnum),
        "serial": Attribute(string=sample.usb_stick_serials[0]),
        "manufacturer": Attribute(string="SanDisk"),
        "product": Attribute(string="SanDisk 3.2Gen1"),
    }
    (node,) = stick.edits.device_nodes
    assert node.path == f"/dev/bus/usb/{busnum:03d}/{devnum:03d}"


def test_devices_with_a_serial_are_named_by_it_and_others_by_their_port(
    sample: SampleHost,
) -> None:
    """Two identical sticks differ by serial, so their names carry it (stable across ports);
    the receiver has none and is named by its port."""
    devices = _devices(sample)
    assert {port: d.name for port, d in devices.items()} == {
        sample.usb_receiver: f"usb-046d-c52b-port-{sample.usb_receiver}",
        sample.usb_sticks[0]: f"usb-0781-5581-{sample.usb_stick_serials[0].lower()}",
        sample.usb_sticks[1]: f"usb-0781-5581-{sample.usb_stick_serials[1].lower()}",
    }


def test_selectors_match_on_serial_and_port_globs(sample: SampleHost) -> None:
    """A serial picks one stick; a port glob picks what is plugged into those ports."""
    by_serial = _devices(sample, UsbSelector(serial=sample.usb_stick_serials[1]))
    by_port = _devices(sample, UsbSelector(port="2-*"))
    assert list(by_serial) == [sample.usb_sticks[1]]
    assert sorted(by_port) == sorted(sample.usb_sticks)


def test_prepare_and_unprepare_hand_over_the_node_and_change_nothing(sample: SampleHost) -> None:
    """USB needs only its device node: the applied plan carries the node, and the tree is
    identical before, during and after."""
    family = UsbFamily(HostRoot(sample.root), (UsbSelector(vendor="0781"),))
    (device, _) = family.discover()
    before = snapshot(sample.root)
    applied = family.apply(family.plan(device, "claim-1", {}))
    assert applied.edits == device.edits
    assert snapshot(sample.root) == before
    family.unprepare(applied)
    assert snapshot(sample.root) == before


def test_configuration_for_a_usb_device_is_refused(sample: SampleHost) -> None:
    """A USB device takes no opaque parameters: a key is an error naming the device."""
    family = UsbFamily(HostRoot(sample.root), (UsbSelector(vendor="0781"),))
    (device, _) = family.discover()
    with pytest.raises(FamilyError, match=f"{device.name}: this device takes no configuration"):
        family.plan(device, "claim-1", {"readOnly": True})


def test_health_follows_the_device_node(sample: SampleHost) -> None:
    """A stick pulled out (its node gone) is unhealthy, naming the node."""
    family = UsbFamily(HostRoot(sample.root), (UsbSelector(vendor="0781"),))
    (device, _) = family.discover()
    assert family.healthy(device).problem == ""
    (sample.root / device.params["node"].lstrip("/")).unlink()
    assert family.healthy(device).problem == f"{device.params['node']} is gone"
