"""The demo node: every device family on one fake host, and the selection file that offers it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostdev_testing.fakehost import FakeHost
from hostdev_testing.fakesysfs import SampleHost, acceptance_host

DEVICE_PLUGIN_RESOURCES: tuple[dict[str, Any], ...] = (
    {"name": "hostdev.k8s.io/x11", "devices": ["x11"], "shares": 10},
    {"name": "hostdev.k8s.io/kvm", "devices": ["kvm"], "shares": 110},
    {"name": "hostdev.k8s.io/udma", "devices": ["udmabuf"]},
)

SELECTION: dict[str, Any] = {
    "hostPaths": [
        {"path": "/dev/kvm", "name": "kvm", "shared": True},
        {"path": "/dev/dri/renderD*"},
        {"path": "/dev/vhost-net", "name": "vhost-net", "shared": True},
        {"path": "/dev/net/tun", "name": "tun", "shared": True},
        {"path": "/dev/udmabuf", "name": "udmabuf"},
        {"path": "/tmp/.X11-unix", "name": "x11", "type": "mount", "shared": True},
    ],
    # The NVMe shares its IOMMU group with an AHCI controller no one selects: the demo
    # opts in to moving the whole group (a real host would rather select both or neither).
    "pci": [{"class": "0x0108", "wholeGroup": True}],
    "sriov": [{"pf": "0000:3b:00.0"}],
    "mdev": [{"parent": "0000:00:02.0"}],
    "usb": [{"vendor": "0781"}, {"vendor": "046d"}],
    "resources": list(DEVICE_PLUGIN_RESOURCES),
}


@dataclass(frozen=True, slots=True)
class DemoClaim:
    """One claim the demo prepares: its name, request, device, family, opaque config."""

    name: str
    request: str
    device: str
    family: str
    config: dict[str, Any] | None = None


def demo_claims(sample: SampleHost) -> tuple[DemoClaim, ...]:
    """One claim per family (two for SR-IOV: vfio and netdevice mode)."""
    stick = f"usb-0781-5581-{sample.usb_stick_serials[0].lower()}"
    return (
        DemoClaim("vm-kvm", "kvm", "kvm", "hostpath"),
        DemoClaim("render", "gpu", "dev-dri-renderd128", "hostpath"),
        DemoClaim("x11", "display", "x11", "hostpath (mount)"),
        DemoClaim("nvme", "nvme", "pci-0000-01-00-0", "pci"),
        DemoClaim("vf-vfio", "vf", "vf-0000-3b-02-2", "sriov (vfio)"),
        DemoClaim(
            "vf-net",
            "vf",
            "vf-0000-3b-02-3",
            "sriov (netdevice)",
            {"mode": "netdevice", "vlan": 100, "interfaceName": "net1"},
        ),
        DemoClaim("vgpu", "gpu", "mdev-0000-00-02-0-i915-gvtg-v5-4-0", "mdev"),
        DemoClaim("usb", "stick", stick, "usb"),
    )


def build(root: Path) -> SampleHost:
    """The acceptance host plus udmabuf and an X11 socket directory."""
    sample = acceptance_host(root)
    extra = FakeHost(sample.root)
    extra.device_node("/dev/udmabuf")
    extra.directory("/tmp/.X11-unix")
    return sample


def main() -> None:
    """Write the demo host to DIR/root and its selection to DIR/devices.yaml, to look at it
    with `hostdev inventory --root DIR/root --config DIR/devices.yaml`."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("dir", type=Path)
    target: Path = parser.parse_args().dir
    build(target / "root")
    (target / "devices.yaml").write_text(json.dumps(SELECTION, indent=2) + "\n")
    print(f"{target}/root and {target}/devices.yaml written")


if __name__ == "__main__":
    main()
