"""Fake host trees (devfs nodes, host paths, DRM links) under a root directory."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec


class FakeHost:
    """A host root for tests: device nodes are regular files, as without mknod privileges."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, host_path: str) -> Path:
        """The real path of a host path under the root."""
        return self.root / host_path.lstrip("/")

    def device_node(self, host_path: str) -> Path:
        """Create a device node stand-in at `host_path`."""
        real = self.path(host_path)
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_bytes(b"")
        return real

    def directory(self, host_path: str) -> Path:
        """Create a directory (an X11 socket directory, say)."""
        real = self.path(host_path)
        real.mkdir(parents=True, exist_ok=True)
        return real

    def remove(self, host_path: str) -> None:
        """Remove a node or directory, as an unplug or module unload does."""
        real = self.path(host_path)
        if real.is_dir() and not real.is_symlink():
            shutil.rmtree(real)
        else:
            real.unlink()

    def drm_node(self, minor: str, pci_address: str, pcie_root: str) -> Path:
        """A DRM minor under /dev/dri with its sysfs class link to a PCI function."""
        node = self.device_node(f"/dev/dri/{minor}")
        pci = self.directory(f"/sys/devices/{pcie_root}/{pci_address}")
        drm = pci / "drm" / minor
        drm.mkdir(parents=True, exist_ok=True)
        cls = self.directory("/sys/class/drm")
        for link, target in ((drm / "device", pci), (cls / minor, drm)):
            if not link.is_symlink():  # building the same host twice changes nothing
                link.symlink_to(os.path.relpath(target, link.parent))
        return node

    def write_config(self, path: Path, host_paths: Iterable[dict[str, Any]]) -> Path:
        """Write a device selection file listing `host_paths` entries."""
        path.write_bytes(msgspec.yaml.encode({"hostPaths": list(host_paths)}))
        return path


def demo_host(root: Path) -> FakeHost:
    """The demo node: /dev/kvm, a render node, vhost-net, tun, udmabuf and the X11 directory."""
    host = FakeHost(root)
    for node in ("/dev/kvm", "/dev/vhost-net", "/dev/net/tun", "/dev/udmabuf"):
        host.device_node(node)
    host.drm_node("renderD128", "0000:00:02.0", "pci0000:00")
    host.directory("/tmp/.X11-unix")
    return host


DEMO_HOST_PATHS: tuple[dict[str, Any], ...] = (
    {"path": "/dev/kvm", "name": "kvm", "shared": True},
    {"path": "/dev/dri/renderD*"},
    {"path": "/dev/vhost-net", "name": "vhost-net", "shared": True},
    {"path": "/dev/net/tun", "name": "tun", "shared": True},
    {"path": "/dev/udmabuf", "name": "udmabuf"},
    {"path": "/tmp/.X11-unix", "name": "x11", "type": "mount", "shared": True},
)
