"""Open a host for reading: check the root, load the selection file, build the families.

The families are built exactly as discovery builds them, with a writer and a netlink that
refuse: the command only reads, whatever a family might try.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hostdev_cli.errors import InputError
from hostdev_families import (
    ConfigError,
    DevicesConfig,
    Family,
    HostPathSpec,
    MdevSelector,
    PciSelector,
    SriovSelector,
    UsbSelector,
    VfSettings,
    build_families,
    load_config,
)
from hostdev_sysfs import HostRoot, ReadOnlyWriter

DEFAULT_CONFIG = "/etc/hostdev/devices.yaml"
CONFIG_ENV = "HOSTDEV_DEVICES_CONFIG"

# With no selection file, look at everything this driver can offer: every PCI function,
# VF, mdev type and USB device, and the usual device nodes. It answers "what could this
# host offer", which is what someone trying the driver out wants to know.
SURVEY_ALL = DevicesConfig(
    host_paths=(
        HostPathSpec(path="/dev/kvm", name="kvm", shared=True),
        HostPathSpec(path="/dev/dri/renderD*"),
        HostPathSpec(path="/dev/vhost-net", name="vhost-net", shared=True),
        HostPathSpec(path="/dev/net/tun", name="tun", shared=True),
        HostPathSpec(path="/dev/udmabuf", name="udmabuf"),
    ),
    pci=(PciSelector(),),
    sriov=(SriovSelector(),),
    mdev=(MdevSelector(),),
    usb=(UsbSelector(),),
)


class RefusingNetlink:
    """A VfNetlink that refuses: discovery never needs netlink, and this command never writes."""

    def get_vf(self, pf: str, vf: int) -> VfSettings:
        raise OSError("hostdev does not use netlink")

    def set_vf(self, pf: str, vf: int, settings: VfSettings) -> None:
        raise OSError("hostdev does not use netlink")


@dataclass(frozen=True, slots=True)
class Host:
    """A host root, its selection and the families built from it."""

    root: HostRoot
    config: DevicesConfig
    config_source: str  # the file read, or a note that none was
    families: dict[str, Family]


def check_root(root: Path) -> HostRoot:
    """The root as a HostRoot, refusing a directory that does not look like a Linux `/`."""
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    missing = [name for name in ("sys", "dev") if not (root / name).is_dir()]
    if missing:
        raise InputError(f"{root}: not a Linux root (no {' or '.join(missing)} directory)")
    return HostRoot(root)


def load_selection(config: Path | None) -> tuple[DevicesConfig, str]:
    """The given file, else $HOSTDEV_DEVICES_CONFIG or the default path, else SURVEY_ALL."""
    if config is not None:
        return _load(config), str(config)
    default = Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    if default.exists():
        return _load(default), str(default)
    return SURVEY_ALL, f"none ({default} not found): every device this driver can offer"


def _load(path: Path) -> DevicesConfig:
    try:
        return load_config(path)
    except ConfigError as err:
        raise InputError(str(err)) from err


def open_host(root: Path, config: Path | None) -> Host:
    """Check the root, read the selection and build its families read-only."""
    host_root = check_root(root)
    selection, source = load_selection(config)
    families = build_families(selection, host_root, ReadOnlyWriter(), RefusingNetlink())
    return Host(host_root, selection, source, families)
