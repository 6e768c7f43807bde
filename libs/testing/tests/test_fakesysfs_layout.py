"""The fake tree has the kernel's layout: relative links that resolve, sysfs file formats."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostdev_testing.fakesysfs import (
    FakeKernel,
    FakeSysfs,
    MdevType,
    SampleHost,
    acceptance_host,
    snapshot,
    two_numa_host,
    vf_bdfs,
)

NVME_DIR = "sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0"
VF_PARENT = "sys/devices/pci0000:3a/0000:3a:00.0"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> SampleHost:
    """The acceptance host, shared by the tests that only read it."""
    return acceptance_host(tmp_path_factory.mktemp("host"))


@pytest.fixture
def fresh_host(tmp_path: Path) -> SampleHost:
    """The acceptance host for a test that changes it."""
    return acceptance_host(tmp_path / "host")


def _link(host: SampleHost, relative: str) -> str:
    return os.readlink(host.root / relative)


def _read(host: SampleHost, relative: str) -> str:
    return (host.root / relative).read_text()


def test_every_symlink_resolves_to_an_existing_path_inside_the_root(host: SampleHost) -> None:
    """No link dangles or leaves the root, as go-nvlib's EvalSymlinks requires."""
    links = [Path(d) / n for d, ds, fs in os.walk(host.root) for n in ds + fs]
    links = [link for link in links if link.is_symlink()]
    assert len(links) > 100
    for link in links:
        real = Path(os.path.realpath(link))
        assert real.exists(), link
        assert host.root in real.parents, link


def test_pci_bus_link_has_the_kernels_relative_target(host: SampleHost) -> None:
    """/sys/bus/pci/devices/<bdf> points three levels up into /sys/devices."""
    target = _link(host, "sys/bus/pci/devices/0000:01:00.0")
    assert target == "../../../devices/pci0000:00/0000:00:1c.0/0000:01:00.0"


@pytest.mark.parametrize(
    ("bdf", "pcie_root"),
    [
        ("0000:01:00.0", "pci0000:00"),
        ("0000:00:02.0", "pci0000:00"),
        ("0000:3b:02.3", "pci0000:3a"),
    ],
)
def test_pcie_root_is_the_first_component_after_devices(
    host: SampleHost, bdf: str, pcie_root: str
) -> None:
    """The upstream pcieRoot helper's reading of the bus link gives the function's root complex."""
    parts = _link(host, f"sys/bus/pci/devices/{bdf}").split("/")
    assert parts[parts.index("devices") + 1] == pcie_root
    assert parts[-1] == bdf


def test_iommu_group_link_depth_follows_the_device_depth(host: SampleHost) -> None:
    """A function behind a root port needs one more `../` than one on the root bus."""
    assert _link(host, "sys/devices/pci0000:00/0000:00:02.0/iommu_group") == (
        "../../../kernel/iommu_groups/1"
    )
    assert _link(host, f"{NVME_DIR}/iommu_group") == "../../../../kernel/iommu_groups/12"


def test_iommu_group_lists_both_functions_with_back_links(host: SampleHost) -> None:
    """Group 12 holds the NVMe and its sibling, each linked back into /sys/devices."""
    devices = host.root / "sys/kernel/iommu_groups/12/devices"
    assert sorted(os.listdir(devices)) == ["0000:01:00.0", "0000:01:00.1"]
    assert os.readlink(devices / "0000:01:00.0") == (
        "../../../../devices/pci0000:00/0000:00:1c.0/0000:01:00.0"
    )
    assert _read(host, "sys/kernel/iommu_groups/12/type") == "DMA-FQ\n"


def test_driver_link_and_driver_back_link_agree(host: SampleHost) -> None:
    """Every bound function's `driver` link has a matching `<bdf>` entry in its driver directory."""
    for bdf in os.listdir(host.root / "sys/bus/pci/devices"):
        device = host.root / "sys/bus/pci/devices" / bdf
        if not (device / "driver").is_symlink():
            continue
        back = device / "driver" / bdf
        assert os.path.realpath(back) == os.path.realpath(device)


def test_driver_directory_has_the_kernels_files(host: SampleHost) -> None:
    """A driver directory carries bind/unbind/new_id/remove_id/uevent and its module link."""
    drv = host.root / "sys/bus/pci/drivers/nvme"
    for name in ("bind", "unbind", "new_id", "remove_id", "uevent"):
        assert (drv / name).is_file()
    assert os.readlink(drv / "module") == "../../../../module/nvme"
    assert _link(host, f"{NVME_DIR}/driver") == "../../../../bus/pci/drivers/nvme"


def test_pci_attributes_use_the_kernels_formats(host: SampleHost) -> None:
    """IDs are 0x-prefixed lower-case, the override reads (null), numa_node is decimal."""
    assert _read(host, f"{NVME_DIR}/vendor") == "0x144d\n"
    assert _read(host, f"{NVME_DIR}/device") == "0xa808\n"
    assert _read(host, f"{NVME_DIR}/class") == "0x010802\n"
    assert _read(host, f"{NVME_DIR}/driver_override") == "(null)\n"
    assert _read(host, f"{NVME_DIR}/numa_node") == "0\n"
    assert len((host.root / NVME_DIR / "config").read_bytes()) == 256


def test_pci_uevent_has_upper_case_ids_and_modalias(host: SampleHost) -> None:
    """uevent matches what KubeVirt's GetDevicePCIID parses."""
    assert _read(host, f"{NVME_DIR}/uevent").splitlines() == [
        "DRIVER=nvme",
        "PCI_CLASS=10802",
        "PCI_ID=144D:A808",
        "PCI_SUBSYS_ID=144D:A801",
        "PCI_SLOT_NAME=0000:01:00.0",
        "MODALIAS=pci:v0000144Dd0000A808sv0000144Dsd0000A801bc01sc08i02",
    ]


def test_vf_bdfs_follow_offset_and_stride() -> None:
    """VF addresses come from the PF's devfn plus offset and stride, carrying into the bus."""
    assert vf_bdfs("0000:3b:00.0", 4) == [
        "0000:3b:02.0",
        "0000:3b:02.1",
        "0000:3b:02.2",
        "0000:3b:02.3",
    ]
    assert vf_bdfs("0000:3b:1f.7", 2, offset=1, stride=2) == ["0000:3c:00.0", "0000:3c:00.2"]


def test_sriov_pf_links_vfs_in_both_directions(tmp_path: Path) -> None:
    """virtfn<i> and physfn are sibling links, placed where offset and stride put the VFs."""
    sysfs = FakeSysfs(tmp_path)
    vfs = sysfs.sriov_pf(
        "0000:05:00.0",
        vendor=0x15B3,
        device=0x1017,
        vf_device=0x1018,
        num_vfs=2,
        driver="mlx5_core",
        vf_driver="mlx5_core",
        iommu_group=7,
        first_vf_iommu_group=8,
        vf_offset=8,
        vf_stride=2,
        netdev="enp5s0f0",
    )
    pf_dir = tmp_path / "sys/devices/pci0000:00/0000:05:00.0"
    assert vfs == ["0000:05:01.0", "0000:05:01.2"]
    assert os.readlink(pf_dir / "virtfn1") == "../0000:05:01.2"
    assert os.readlink(tmp_path / "sys/devices/pci0000:00/0000:05:01.2/physfn") == "../0000:05:00.0"
    assert (pf_dir / "sriov_offset").read_text() == "8\n"


def test_pf_reports_its_sriov_attributes(host: SampleHost) -> None:
    """The PF carries the sriov_* files that mark it as a physical function."""
    pf_dir = f"{VF_PARENT}/0000:3b:00.0"
    assert _read(host, f"{pf_dir}/sriov_totalvfs") == "64\n"
    assert _read(host, f"{pf_dir}/sriov_numvfs") == "4\n"
    assert _read(host, f"{pf_dir}/sriov_vf_device") == "154c\n"


def test_netdev_bound_vfs_expose_class_net_links(host: SampleHost) -> None:
    """VFs on iavf have net/<pf>v<i> and a class link; VFs on vfio-pci have no netdev."""
    assert _link(host, "sys/class/net/ens1f0v2") == (
        "../../devices/pci0000:3a/0000:3a:00.0/0000:3b:02.2/net/ens1f0v2"
    )
    assert _read(host, f"{VF_PARENT}/0000:3b:02.2/net/ens1f0v2/operstate") == "up\n"
    assert not (host.root / f"{VF_PARENT}/0000:3b:02.0/net").exists()
    assert (host.root / "sys/class/net/ens1f0").is_symlink()


def test_vfio_bound_vfs_have_group_nodes_and_cdevs(host: SampleHost) -> None:
    """A function on vfio-pci has /dev/vfio/<group>, vfio-dev/vfio<N> and an override."""
    vf0 = f"{VF_PARENT}/0000:3b:02.0"
    assert (host.root / "dev/vfio/41").is_file()
    assert _read(host, f"{vf0}/vfio-dev/vfio0/dev") == "511:0\n"
    assert _read(host, f"{vf0}/driver_override") == "vfio-pci\n"
    assert not (host.root / "dev/vfio/43").exists()
    assert not (host.root / "dev/vfio/12").exists()


def test_mdev_parent_types_start_at_their_maximum(host: SampleHost) -> None:
    """Each type's available_instances is its maximum and the parent appears in mdev_bus."""
    types = host.root / "sys/class/mdev_bus/0000:00:02.0/mdev_supported_types"
    assert (types / "i915-GVTg_V5_4/available_instances").read_text() == "2\n"
    assert (types / "i915-GVTg_V5_8/available_instances").read_text() == "4\n"
    assert (types / "i915-GVTg_V5_4/device_api").read_text() == "vfio-pci\n"
    assert _link(host, "sys/class/mdev_bus/0000:00:02.0") == "../../devices/pci0000:00/0000:00:02.0"


def test_pre_created_mdev_equals_a_kernel_created_one(tmp_path: Path) -> None:
    """FakeSysfs.mdev builds exactly what writing the UUID to `create` builds."""
    uuid = "4b20d080-1b54-4048-85b3-a6a62d165c01"
    built = acceptance_host(tmp_path / "built")
    built.sysfs.mdev(built.igpu, "i915-GVTg_V5_4", uuid, iommu_group=0)
    created = acceptance_host(tmp_path / "created")
    create = f"/sys/class/mdev_bus/{created.igpu}/mdev_supported_types/i915-GVTg_V5_4/create"
    FakeKernel(created.root).write(create, uuid)
    assert snapshot(built.root) == snapshot(created.root)


def test_mdev_parent_rejects_unknown_function(tmp_path: Path) -> None:
    """Types can only be added to a PCI function that exists."""
    with pytest.raises(ValueError, match="no PCI function"):
        FakeSysfs(tmp_path).mdev_parent("0000:09:00.0", [MdevType("t", "T", 1)])


def test_drm_minor_links_back_to_its_function(host: SampleHost) -> None:
    """The DRM class entry resolves to the GPU, and its `device` link names the function."""
    drm = "sys/devices/pci0000:00/0000:00:02.0/drm"
    assert _link(host, f"{drm}/card0/device") == "../../../0000:00:02.0"
    assert _link(host, "sys/class/drm/renderD128") == f"../../{drm.removeprefix('sys/')}/renderD128"
    assert _link(host, "dev/dri/by-path/pci-0000:00:02.0-render") == "../renderD128"
    assert _read(host, f"{drm}/renderD128/dev") == "226:128\n"


def test_numa_nodes_are_reachable_through_the_node_bus(host: SampleHost) -> None:
    """/sys/bus/node/devices/node<N>/cpulist reads the node's CPUs."""
    assert _link(host, "sys/bus/node/devices/node1") == "../../../devices/system/node/node1"
    assert _read(host, "sys/bus/node/devices/node1/cpulist") == "16-31\n"


def test_host_has_the_vm_device_nodes(host: SampleHost) -> None:
    """/dev/kvm, vhost-net, net/tun and vfio/vfio exist as regular-file stand-ins."""
    for node in ("dev/kvm", "dev/vhost-net", "dev/net/tun", "dev/vfio/vfio"):
        assert (host.root / node).is_file()
    assert (host.root / "sys/class/iommu/dmar0").is_dir()


def test_remove_pci_drops_the_function_and_every_link_to_it(fresh_host: SampleHost) -> None:
    """Hot-unplugging a VF removes its directory, bus and driver links, group and group node."""
    fresh_host.sysfs.remove_pci("0000:3b:02.0")
    picture = snapshot(fresh_host.root)
    assert not any(
        "0000:3b:02.0" in key or "0000:3b:02.0" in value for key, value in picture.items()
    )
    assert "sys/kernel/iommu_groups/41" not in picture
    assert "dev/vfio/41" not in picture
    assert "sys/class/vfio-dev/vfio0" not in picture
    assert "dev/vfio/42" in picture


def test_remove_pci_of_a_shared_group_member_keeps_the_group(fresh_host: SampleHost) -> None:
    """Removing one of two functions of a group leaves the group with the other."""
    fresh_host.sysfs.remove_pci("0000:01:00.1")
    assert os.listdir(fresh_host.root / "sys/kernel/iommu_groups/12/devices") == ["0000:01:00.0"]


def test_two_numa_host_splits_identical_functions_across_roots(tmp_path: Path) -> None:
    """Two functions sit under pci0000:00 on node 0 and two under pci0000:80 on node 1."""
    numa = two_numa_host(tmp_path)
    for bdfs, node, pcie_root in ((numa.numa0, 0, "pci0000:00"), (numa.numa1, 1, "pci0000:80")):
        for bdf in bdfs:
            target = os.readlink(tmp_path / "sys/bus/pci/devices" / bdf)
            assert target.split("/")[4] == pcie_root
            assert (tmp_path / "sys/bus/pci/devices" / bdf / "numa_node").read_text() == f"{node}\n"
            assert (tmp_path / "sys/bus/pci/devices" / bdf / "device").read_text() == "0xa808\n"
    assert len(set(numa.groups.values())) == 4
