"""Ready-made hosts: the acceptance host of issue #3 and a two-socket host for NUMA tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hostdev_testing.fakesysfs.builder import FakeSysfs, MdevType

GVTG_DESCRIPTION = (
    "low_gm_size: {low}MB\nhigh_gm_size: {high}MB\nfence: 4\nresolution: {res}\nweight: {weight}\n"
)


@dataclass(frozen=True)
class SampleHost:
    """The acceptance host's identifiers; see `acceptance_host` for what each one is."""

    root: Path
    sysfs: FakeSysfs
    nvme: str
    nvme_sibling: str
    nvme_group: int
    nvme_root_port: str
    pf: str
    pf_group: int
    pf_netdev: str
    vfs: tuple[str, ...]
    vf_groups: tuple[int, ...]
    vfio_vfs: tuple[str, ...]
    netdev_vfs: tuple[str, ...]
    igpu: str
    igpu_group: int
    mdev_types: Mapping[str, int]
    xhci: str
    usb_sticks: tuple[str, str]
    usb_stick_serials: tuple[str, str]
    usb_receiver: str
    usb_bus_dev: Mapping[str, tuple[int, int]]
    numa_nodes: tuple[int, ...]
    dev_nodes: tuple[str, ...]


@dataclass(frozen=True)
class NumaHost:
    """Four identical NVMe functions, two per NUMA node, each in its own IOMMU group."""

    root: Path
    sysfs: FakeSysfs
    vendor: int
    device: int
    numa0: tuple[str, str]
    numa1: tuple[str, str]
    groups: Mapping[str, int]


def _common(sysfs: FakeSysfs) -> tuple[str, ...]:
    # What every KVM host has: two NUMA nodes, an IOMMU, VFIO loaded and the KVM nodes.
    sysfs.numa(0, "0-15")
    sysfs.numa(1, "16-31")
    sysfs.iommu("dmar0")
    sysfs.pci_driver("vfio-pci")
    sysfs.module("vfio_iommu_type1", {"allow_unsafe_interrupts": "N"})
    nodes = ("/dev/kvm", "/dev/vhost-net", "/dev/net/tun", "/dev/vfio/vfio")
    for node in nodes:
        sysfs.device_node(node)
    return nodes


def _pci_side(sysfs: FakeSysfs) -> None:
    # NVMe and an AHCI function share group 12: no ACS between functions of one device.
    sysfs.pci(
        "0000:00:1c.0",
        vendor=0x8086,
        device=0xA338,
        class_code=0x060400,
        driver="pcieport",
        iommu_group=11,
        numa_node=0,
    )
    sysfs.pci(
        "0000:01:00.0",
        vendor=0x144D,
        device=0xA808,
        class_code=0x010802,
        driver="nvme",
        iommu_group=12,
        numa_node=0,
        bridge="0000:00:1c.0",
        subsystem_device=0xA801,
    )
    sysfs.pci(
        "0000:01:00.1",
        vendor=0x1B21,
        device=0x1062,
        class_code=0x010601,
        driver="ahci",
        iommu_group=12,
        numa_node=0,
        bridge="0000:00:1c.0",
        subsystem_device=0x1060,
    )
    sysfs.pci(
        "0000:3a:00.0",
        vendor=0x8086,
        device=0x2030,
        class_code=0x060400,
        driver="pcieport",
        iommu_group=39,
        numa_node=1,
        pcie_root="pci0000:3a",
    )


def _igpu(sysfs: FakeSysfs) -> dict[str, int]:
    sysfs.pci(
        "0000:00:02.0",
        vendor=0x8086,
        device=0x3E92,
        class_code=0x030000,
        driver="i915",
        iommu_group=1,
        numa_node=0,
        subsystem_device=0x2212,
        revision=0x02,
    )
    types = [
        MdevType(
            "i915-GVTg_V5_4",
            "GVTg_V5_4",
            2,
            description=GVTG_DESCRIPTION.format(low=128, high=512, res="1920x1200", weight=4),
        ),
        MdevType(
            "i915-GVTg_V5_8",
            "GVTg_V5_8",
            4,
            description=GVTG_DESCRIPTION.format(low=64, high=384, res="1024x768", weight=2),
        ),
    ]
    sysfs.mdev_parent("0000:00:02.0", types)
    sysfs.drm("0000:00:02.0", "card0")
    sysfs.drm("0000:00:02.0", "renderD128")
    return {t.type_id: t.available_instances for t in types}


def _usb(sysfs: FakeSysfs) -> tuple[tuple[str, str], dict[str, tuple[int, int]]]:
    sysfs.pci(
        "0000:00:14.0",
        vendor=0x8086,
        device=0xA36D,
        class_code=0x0C0330,
        driver="xhci_hcd",
        iommu_group=5,
        numa_node=0,
    )
    sysfs.usb(
        "1-1",
        busnum=1,
        devnum=3,
        vendor="046d",
        product="c52b",
        bcd_device="1211",
        speed="12",
        manufacturer="Logitech",
        product_name="USB Receiver",
        interface_class="03",
    )
    serials = ("4C530001230419117283", "4C530001230419117284")
    # SanDisk really reports its strings with a leading space; readers must cope.
    for port, devnum, serial in (("2-3", 4, serials[0]), ("2-4", 5, serials[1])):
        sysfs.usb(
            port,
            busnum=2,
            devnum=devnum,
            vendor="0781",
            product="5581",
            speed="5000",
            serial=serial,
            manufacturer=" SanDisk",
            product_name=" SanDisk 3.2Gen1",
            interface_class="08",
        )
    return serials, {"1-1": (1, 3), "2-3": (2, 4), "2-4": (2, 5)}


def acceptance_host(root: Path) -> SampleHost:
    """The host issue #3's acceptance runs on, modelled on the shared doc's section 9.

    NVMe 0000:01:00.0 (nvme, NUMA 0) shares IOMMU group 12 with AHCI 0000:01:00.1 behind root
    port 0000:00:1c.0; X710 PF 0000:3b:00.0 (i40e, NUMA 1, under pci0000:3a) has VFs
    3b:02.0-3 in groups 41-44, the first two on vfio-pci, the others on iavf with netdevs;
    iGPU 0000:00:02.0 (i915) offers GVT-g types V5_4 (2 instances) and V5_8 (4), none
    created, plus card0 and renderD128; two identical SanDisk sticks on 2-3 and 2-4 differ
    only by serial, and a Logitech receiver on 1-1 has none.
    """
    sysfs = FakeSysfs(root)
    dev_nodes = _common(sysfs)
    _pci_side(sysfs)
    vf_drivers: list[str | None] = ["vfio-pci", "vfio-pci", "iavf", "iavf"]
    vfs = sysfs.sriov_pf(
        "0000:3b:00.0",
        vendor=0x8086,
        device=0x1572,
        vf_device=0x154C,
        num_vfs=4,
        driver="i40e",
        vf_driver="iavf",
        vf_drivers=vf_drivers,
        iommu_group=40,
        first_vf_iommu_group=41,
        numa_node=1,
        pcie_root="pci0000:3a",
        bridge="0000:3a:00.0",
        netdev="ens1f0",
    )
    mdev_types = _igpu(sysfs)
    serials, bus_dev = _usb(sysfs)
    return SampleHost(
        root=sysfs.root,
        sysfs=sysfs,
        nvme="0000:01:00.0",
        nvme_sibling="0000:01:00.1",
        nvme_group=12,
        nvme_root_port="0000:00:1c.0",
        pf="0000:3b:00.0",
        pf_group=40,
        pf_netdev="ens1f0",
        vfs=tuple(vfs),
        vf_groups=(41, 42, 43, 44),
        vfio_vfs=tuple(vfs[:2]),
        netdev_vfs=tuple(vfs[2:]),
        igpu="0000:00:02.0",
        igpu_group=1,
        mdev_types=mdev_types,
        xhci="0000:00:14.0",
        usb_sticks=("2-3", "2-4"),
        usb_stick_serials=serials,
        usb_receiver="1-1",
        usb_bus_dev=bus_dev,
        numa_nodes=(0, 1),
        dev_nodes=dev_nodes,
    )


def two_numa_host(root: Path) -> NumaHost:
    """Four Samsung NVMe functions on nvme, two behind pci0000:00 (NUMA 0), two behind pci0000:80 (NUMA 1)."""
    sysfs = FakeSysfs(root)
    _common(sysfs)
    layout = {
        # root port, its group, function, its group, NUMA node, PCIe root
        "0000:01:00.0": ("0000:00:01.0", 2, 10, 0, "pci0000:00"),
        "0000:02:00.0": ("0000:00:01.1", 3, 11, 0, "pci0000:00"),
        "0000:81:00.0": ("0000:80:01.0", 20, 30, 1, "pci0000:80"),
        "0000:82:00.0": ("0000:80:01.1", 21, 31, 1, "pci0000:80"),
    }
    for bdf, (port, port_group, group, node, pcie_root) in layout.items():
        sysfs.pci(
            port,
            vendor=0x8086,
            device=0x2030,
            class_code=0x060400,
            driver="pcieport",
            iommu_group=port_group,
            numa_node=node,
            pcie_root=pcie_root,
        )
        sysfs.pci(
            bdf,
            vendor=0x144D,
            device=0xA808,
            class_code=0x010802,
            driver="nvme",
            iommu_group=group,
            numa_node=node,
            pcie_root=pcie_root,
            bridge=port,
            subsystem_device=0xA801,
        )
    return NumaHost(
        root=sysfs.root,
        sysfs=sysfs,
        vendor=0x144D,
        device=0xA808,
        numa0=("0000:01:00.0", "0000:02:00.0"),
        numa1=("0000:81:00.0", "0000:82:00.0"),
        groups={bdf: spec[2] for bdf, spec in layout.items()},
    )


@dataclass(frozen=True)
class SmallVm:
    """A small cloud VM: a handful of virtio functions, no IOMMU, no NUMA, no USB, no GPU."""

    root: Path
    sysfs: FakeSysfs
    bridges: tuple[str, ...]
    virtio: tuple[str, ...]
    dev_nodes: tuple[str, ...]
    boot_id: str


# QEMU's i440FX machine: host bridge, ISA bridge, then one virtio function per slot.
_VM_BRIDGES = {
    "0000:00:00.0": (0x8086, 0x1237, 0x060000),  # 440FX host bridge
    "0000:00:01.0": (0x8086, 0x7000, 0x060100),  # PIIX3 ISA bridge
}
_VM_VIRTIO = {
    "0000:00:02.0": (0x1000, 0x020000),  # virtio-net
    "0000:00:03.0": (0x1001, 0x010000),  # virtio-blk
    "0000:00:04.0": (0x1002, 0x00FF00),  # virtio-balloon
    "0000:00:05.0": (0x1005, 0x00FF00),  # virtio-rng
}
VIRTIO_VENDOR = 0x1AF4


def small_vm(root: Path) -> SmallVm:
    """The VM a newcomer tries the driver on: no IOMMU groups, numa_node -1 on every function,
    no /sys/bus/usb, and only /dev/kvm (nested virtualisation) and /dev/net/tun."""
    sysfs = FakeSysfs(root)
    for bdf, (vendor, device, class_code) in _VM_BRIDGES.items():
        sysfs.pci(bdf, vendor=vendor, device=device, class_code=class_code, iommu_group=None)
    for bdf, (device, class_code) in _VM_VIRTIO.items():
        sysfs.pci(
            bdf,
            vendor=VIRTIO_VENDOR,
            device=device,
            class_code=class_code,
            iommu_group=None,
            driver="virtio-pci",
            subsystem_device=0x0001,
        )
    nodes = ("/dev/kvm", "/dev/net/tun")
    for node in nodes:
        sysfs.device_node(node)
    boot_id = "5f1c2a9e-3b7d-4c1e-9a2f-0d6b8e4c7a13"
    boot_file = sysfs.root / "proc/sys/kernel/random/boot_id"
    boot_file.parent.mkdir(parents=True, exist_ok=True)
    boot_file.write_text(boot_id + "\n")
    return SmallVm(
        root=sysfs.root,
        sysfs=sysfs,
        bridges=tuple(_VM_BRIDGES),
        virtio=tuple(_VM_VIRTIO),
        dev_nodes=nodes,
        boot_id=boot_id,
    )
