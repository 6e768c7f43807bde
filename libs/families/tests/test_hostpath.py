"""The host path family on a fake host tree."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from hostdev_devconfig import DevicesConfig, HostPathSpec
from hostdev_events.inventory import ConsumableCapacity
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


def test_paths_group_card_and_render_node_into_one_device(tmp_path: Path) -> None:
    """`paths` hands the iGPU's card0 and renderD128 over together as one named device,
    health follows every member, and a group with a member missing is not offered."""
    host = FakeHost(tmp_path)
    host.drm_node("card0", "0000:00:02.0", "pci0000:00")
    host.drm_node("renderD128", "0000:00:02.0", "pci0000:00")
    spec = HostPathSpec(paths=("/dev/dri/card0", "/dev/dri/renderD128"), name="igpu", shared=True)
    family = HostPathFamily(HostRoot(tmp_path), (spec,))
    (device,) = family.discover()
    assert device.name == "igpu"
    assert device.shareable is True
    assert [(n.path, n.host_path) for n in device.edits.device_nodes] == [
        ("/dev/dri/card0", str(tmp_path.resolve() / "dev/dri/card0")),
        ("/dev/dri/renderD128", str(tmp_path.resolve() / "dev/dri/renderD128")),
    ]
    assert device.attributes["resource.kubernetes.io/pciBusID"].string == "0000:00:02.0"
    assert family.healthy(device).problem == ""
    host.remove("/dev/dri/renderD128")
    assert family.healthy(device).problem == "/dev/dri/renderD128 is gone"
    assert family.discover() == []


def test_paths_globs_collect_every_node_of_a_directory_and_stay_healthy_while_one_matches(
    tmp_path: Path,
) -> None:
    """`/dev/vfio/*` as one device: the container node and every group node found."""
    host = FakeHost(tmp_path)
    for node in ("/dev/vfio/vfio", "/dev/vfio/12", "/dev/vfio/3"):
        host.device_node(node)
    family = HostPathFamily(
        HostRoot(tmp_path), (HostPathSpec(paths=("/dev/vfio/*",), name="vfio", shared=True),)
    )
    (device,) = family.discover()
    assert sorted(n.path for n in device.edits.device_nodes) == [
        "/dev/vfio/12",
        "/dev/vfio/3",
        "/dev/vfio/vfio",
    ]
    # Group nodes come and go as functions move to and from vfio-pci: still healthy.
    host.remove("/dev/vfio/12")
    assert family.healthy(device).problem == ""
    for node in ("/dev/vfio/3", "/dev/vfio/vfio"):
        host.remove(node)
    assert family.healthy(device).problem == "/dev/vfio/* is gone"


def test_slots_make_a_shared_device_with_a_consumable_capacity(tmp_path: Path) -> None:
    """`slots: 4` shares the device among at most four claims: a `slots` capacity of 4,
    each claim taking 1 by default; env entries go with the device."""
    FakeHost(tmp_path).device_node("/dev/udmabuf")
    spec = HostPathSpec(path="/dev/udmabuf", name="udmabuf", slots=4, env=("A=1",))
    (device,) = HostPathFamily(HostRoot(tmp_path), (spec,)).discover()
    assert device.shareable is True
    assert device.consumable == {"slots": ConsumableCapacity(value=4, default=1)}
    assert device.edits.env == ("A=1",)


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ({"name": "x"}, "exactly one of path and paths"),
        ({"path": "/dev/a", "paths": ["/dev/b"], "name": "x"}, "exactly one of path and paths"),
        ({"paths": ["/dev/a"]}, "need a name"),
        ({"paths": ["/dev/a"], "name": "x", "containerPath": "/x"}, "containerPath"),
        ({"path": "/dev/a", "slots": 0}, "slots must be between 1"),
        ({"path": "/dev/a", "env": ["NOEQUALS"]}, "not NAME=value"),
    ],
)
def test_bad_host_path_entries_are_refused_with_the_reason(
    entry: dict[str, object], error: str
) -> None:
    """The selection file's decoder names what is wrong with an entry."""
    with pytest.raises(msgspec.ValidationError, match=error):
        msgspec.convert({"hostPaths": [entry]}, DevicesConfig)
