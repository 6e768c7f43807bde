"""hostdev inventory: the service's families on a host, read-only, with reasons for the rest."""

from __future__ import annotations

from pathlib import Path

import msgspec
import yaml

from hostdev_events.inventory import Device
from hostdev_testing.cli import hostdev
from hostdev_testing.fakesysfs import SampleHost, SmallVm, snapshot


async def test_small_vm_offers_kvm_and_tun_and_says_why_virtio_functions_are_not(
    vm: SmallVm,
) -> None:
    """Without a selection file every family looks; virtio functions fail on the IOMMU."""
    ran = await hostdev("inventory", "--root", vm.root, "--json")
    assert ran.code == 0, ran.err
    data = ran.json()
    assert [(d["name"], d["family"]) for d in data["devices"]] == [
        ("kvm", "hostpath"),
        ("tun", "hostpath"),
    ]
    assert data["iommuGroups"] == 0
    reasons = {(n["candidate"], n["code"]) for n in data["notOffered"]}
    assert {(bdf, "iommu-off") for bdf in vm.virtio} <= reasons
    assert ("/dev/vhost-net", "device-node-missing") in reasons
    assert ("*", "no-usb") in reasons
    # The built-in selection matches every function for SR-IOV; none is capable, and that
    # is no news worth a line per function.
    assert not any(code == "not-sriov-capable" for _, code in reasons)


async def test_small_vm_table_names_the_iommu_as_the_reason(vm: SmallVm) -> None:
    """The human table says the IOMMU is off and why each virtio function is left out."""
    ran = await hostdev("inventory", "--root", vm.root)
    assert ran.code == 0, ran.err
    assert "IOMMU: off (no IOMMU groups)" in ran.out
    lines = [line for line in ran.out.splitlines() if line.startswith(vm.virtio[0])]
    assert lines == [
        f"{vm.virtio[0]}       pci       the IOMMU is off on this host (boot with intel_iommu=on or amd_iommu=on)"
    ]


async def test_demo_host_offers_every_family_and_skips_what_the_selection_does_not_match(
    demo: tuple[SampleHost, Path],
) -> None:
    """NVMe, VFs, vGPU slots, USB sticks and host paths offered; AHCI and xHCI not selected."""
    sample, selection = demo
    ran = await hostdev("inventory", "--root", sample.root, "--config", selection, "--json")
    assert ran.code == 0, ran.err
    devices = [msgspec.convert(d, Device) for d in ran.json()["devices"]]
    families = {d.family for d in devices}
    assert families == {"hostpath", "pci", "sriov", "mdev", "usb"}
    names = {d.name for d in devices}
    assert {"kvm", "x11", "pci-0000-01-00-0", "vf-0000-3b-02-0"} <= names
    assert all(d.healthy for d in devices)
    not_offered = {n["candidate"]: n for n in ran.json()["notOffered"]}
    assert not_offered[sample.nvme_sibling]["code"] == "not-selected"
    assert not_offered[sample.xhci]["reason"] == "no pci selector of the configuration matches it"
    # Not a pci device, yet offered through its mdev types: the reasons are per family.
    assert not_offered[sample.igpu]["family"] == "pci"
    assert any(d.family == "mdev" and d.params["parent"] == sample.igpu for d in devices)
    assert sample.vfs[0] not in not_offered


async def test_inventory_never_writes_to_the_tree(demo: tuple[SampleHost, Path]) -> None:
    """The tree is byte-for-byte the same after a scan (no bind, no override, no mdev)."""
    sample, selection = demo
    before = snapshot(sample.root)
    ran = await hostdev("inventory", "--root", sample.root, "--config", selection)
    assert ran.code == 0, ran.err
    assert snapshot(sample.root) == before


async def test_yaml_output_holds_the_same_devices_as_json(vm: SmallVm) -> None:
    """--yaml and --json carry the same data."""
    as_json = (await hostdev("inventory", "--root", vm.root, "--json")).json()
    as_yaml = yaml.safe_load((await hostdev("inventory", "--root", vm.root, "--yaml")).out)
    assert as_yaml == as_json


async def test_a_root_that_is_not_a_linux_tree_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A directory without sys/ and dev/ is refused with its name."""
    ran = await hostdev("inventory", "--root", tmp_path)
    assert ran.code == 2
    assert ran.err == f"hostdev inventory: {tmp_path}: not a Linux root (no sys or dev directory)\n"
    assert ran.out == ""


async def test_a_malformed_selection_file_is_one_line_naming_it_and_exit_2(
    vm: SmallVm, tmp_path: Path
) -> None:
    """A selection with a wrongly typed field names the file and the field."""
    bad = tmp_path / "devices.yaml"
    bad.write_text("hostPaths: {path: /dev/kvm}\n")
    ran = await hostdev("inventory", "--root", vm.root, "--config", bad)
    assert ran.code == 2
    assert ran.err.startswith(f"hostdev inventory: {bad}: Expected `array`")
    assert ran.err.count("\n") == 1
