"""What a node reboot leaves behind, done to a fake host tree with the fake kernel.

Only what does not survive a reboot is undone: the CDI directory (a tmpfs) is empty, the
kernel forgot every driver_override and vfio binding (each function is probed by its own
driver again), mediated devices are gone, and the kernel has a new boot ID. The NATS
buckets (checkpoints, ledger, inventory) and the kubelet's own checkpoint are on disk
and survive.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from hostdev_testing.fakesysfs import FakeKernel

MDEV_DEVICES = "sys/bus/mdev/devices"


def reboot(
    root: Path, cdi_root: Path, boot_id_file: Path, new_boot_id: str, functions: Iterable[str]
) -> None:
    """Reboot the fake node; `functions` are the PCI functions whose bindings are reset."""
    for spec in cdi_root.glob("*"):
        if spec.is_file():
            spec.unlink()
    kernel = FakeKernel(root)
    for bdf in functions:
        if (root / f"sys/bus/pci/devices/{bdf}/driver").exists():
            kernel.write(f"/sys/bus/pci/devices/{bdf}/driver/unbind", bdf)
        kernel.write(f"/sys/bus/pci/devices/{bdf}/driver_override", "\n")
        kernel.write("/sys/bus/pci/drivers_probe", bdf)
    mdevs = root / MDEV_DEVICES
    for mdev in sorted(mdevs.iterdir()) if mdevs.is_dir() else ():
        kernel.write(f"/{MDEV_DEVICES}/{mdev.name}/remove", "1")
    boot_id_file.write_text(new_boot_id + "\n")
