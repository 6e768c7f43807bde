"""The host path family on a fake host tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostdev_devconfig import HostPathSpec
from hostdev_families import FamilyError, dns_label
from hostdev_families.hostpath import HostPathFamily
from hostdev_sysfs import HostRoot
from hostdev_testing.fakehost import FakeHost, demo_host


def test_discovery_finds_configured_paths_with_stable_names(tmp_path: Path) -> None:
    """Named entries keep their names, globs get path-derived names, missing paths are skipped."""
    demo_host(tmp_path)
    family = HostPathFamily(
        HostRoot(tmp_path),
        (
            HostPathSpec(path="/dev/kvm", name="kvm", shared=True),
            HostPathSpec(path="/dev/dri/renderD*"),
            HostPathSpec(path="/dev/missing"),
        ),
    )
    devices = {d.name: d for d in family.discover()}
    assert set(devices) == {"kvm", "dev-dri-renderd128"}
    assert devices["kvm"].shareable is True
    node = devices["kvm"].edits.device_nodes[0]
    assert (node.path, node.host_path) == ("/dev/kvm", str(tmp_path.resolve() / "dev/kvm"))


def test_paths_escaping_the_root_are_ignored(tmp_path: Path) -> None:
    """`..` in a configured path never reaches outside the root."""
    FakeHost(tmp_path / "root").device_node("/dev/kvm")
    (tmp_path / "secret").write_text("x")
    family = HostPathFamily(HostRoot(tmp_path / "root"), (HostPathSpec(path="/dev/../../secret"),))
    assert family.discover() == []


def test_mount_entries_become_bind_mounts(tmp_path: Path) -> None:
    """A `mount` entry is handed over as a mount at its container path."""
    FakeHost(tmp_path).directory("/tmp/.X11-unix")
    family = HostPathFamily(
        HostRoot(tmp_path),
        (HostPathSpec(path="/tmp/.X11-unix", name="x11", type="mount", read_only=True),),
    )
    (device,) = family.discover()
    mount = device.edits.mounts[0]
    assert (mount.container_path, mount.read_only) == ("/tmp/.X11-unix", True)


def test_health_follows_the_path(tmp_path: Path) -> None:
    """A device whose node disappears is unhealthy."""
    host = FakeHost(tmp_path)
    host.device_node("/dev/kvm")
    family = HostPathFamily(HostRoot(tmp_path), (HostPathSpec(path="/dev/kvm"),))
    (device,) = family.discover()
    assert family.healthy(device).problem == ""
    host.remove("/dev/kvm")
    assert family.healthy(device).problem == "/dev/kvm is gone"


def test_dns_labels_are_stable_and_bounded() -> None:
    """Derived names are lowercase DNS labels; long ones end in a stable hash."""
    assert dns_label("/dev/dri/renderD128") == "dev-dri-renderd128"
    long = dns_label("/" + "x" * 100)
    assert len(long) <= 63
    assert long == dns_label("/" + "x" * 100)


def test_configuration_for_a_device_that_takes_none_is_refused(tmp_path: Path) -> None:
    """Opaque parameters a family would ignore are an error, not silently dropped."""
    FakeHost(tmp_path).device_node("/dev/kvm")
    family = HostPathFamily(HostRoot(tmp_path), (HostPathSpec(path="/dev/kvm"),))
    (device,) = family.discover()
    assert family.plan(device, "u", {"apiVersion": "hostdev.k8s.io/v1alpha1"}).device == device.name
    with pytest.raises(FamilyError, match="takes no configuration"):
        family.plan(device, "u", {"vLan": 5})
    with pytest.raises(FamilyError, match="apiVersion"):
        family.plan(device, "u", {"apiVersion": "other.example.com/v1"})
