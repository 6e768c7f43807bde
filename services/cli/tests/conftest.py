"""Fixtures of the hostdev command's tests: the hosts it looks at, and a clean environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hostdev_testing.demo_node import SELECTION, build
from hostdev_testing.fakesysfs import SampleHost, SmallVm, small_vm


@pytest.fixture(autouse=True)
def no_host_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """This machine's own selection file or node settings must not leak into the tests."""
    monkeypatch.setenv("HOSTDEV_DEVICES_CONFIG", str(tmp_path / "no-such-devices.yaml"))
    for name in (
        "NODE_NAME",
        "HOSTDEV_HOST_ROOT",
        "HOSTDEV_NATS_URL",
        "HOSTDEV_JS_DOMAIN",
        "HOSTDEV_DRIVER_NAME",
        "HOSTDEV_KUBE_API_URL",
        "HOSTDEV_PLUGINS_DIR",
        "HOSTDEV_REGISTRY_DIR",
        "HOSTDEV_CDI_ROOT",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def vm(short_dir: Path) -> SmallVm:
    """The small VM tree: virtio functions without IOMMU groups, /dev/kvm and /dev/net/tun."""
    return small_vm(short_dir / "vm")


@pytest.fixture
def demo(short_dir: Path) -> tuple[SampleHost, Path]:
    """The demo host (every family) and its selection file."""
    sample = build(short_dir / "demo")
    selection = short_dir / "demo-devices.yaml"
    selection.write_text(json.dumps(SELECTION))
    return sample, selection
