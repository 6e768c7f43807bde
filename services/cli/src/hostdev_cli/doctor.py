"""`hostdev doctor`: is this node ready for the driver? One line per check, with what to do.

The IOMMU and vfio-pci checks fail only when the selection offers PCI, SR-IOV or mdev
devices (a warning otherwise). Every path is read under the root (a container sees the host at /host, say); nothing is
written: "writable" is asked of the kernel with access(2).
"""

from __future__ import annotations

import enum
import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hostdev_cli.checkpoints import Recorded, current_boot_id
from hostdev_cli.reasons import IOMMU_GROUPS, iommu_groups
from hostdev_events.state import ClaimStep
from hostdev_families import DevicesConfig
from hostdev_sysfs import HostRoot

CONTAINERD_CONFIG = "/etc/containerd/config.toml"
CRIO_CONFIGS = ("/etc/crio/crio.conf", "/etc/crio/crio.conf.d")
CDI_STATIC = "/etc/cdi"
DEFAULT_CDI_ROOT = "/var/run/cdi"
DEFAULT_REGISTRY_DIR = "/var/lib/kubelet/plugins_registry"
DEFAULT_PLUGINS_DIR = "/var/lib/kubelet/plugins"
# containerd 1.7 (config version 2) has CDI off by default; containerd 2.x (version 3) on.
CRI_V2 = "io.containerd.grpc.v1.cri"
CRI_V3 = "io.containerd.cri.v1.runtime"


class Status(enum.StrEnum):
    """`fail` makes the command exit non-zero; `warn` is worth a look but not a blocker."""

    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Check:
    """One check's verdict: what was found, or what to do."""

    name: str
    status: Status
    detail: str


@dataclass(frozen=True, slots=True)
class Paths:
    """Where the driver's directories are on this node (the services' settings)."""

    cdi_root: str = DEFAULT_CDI_ROOT
    plugins_dir: str = DEFAULT_PLUGINS_DIR
    registry_dir: str = DEFAULT_REGISTRY_DIR

    @classmethod
    def from_env(cls) -> Paths:
        """HOSTDEV_CDI_ROOT, HOSTDEV_PLUGINS_DIR, HOSTDEV_REGISTRY_DIR as the services read them."""
        env = os.environ
        return cls(
            cdi_root=env.get("HOSTDEV_CDI_ROOT") or DEFAULT_CDI_ROOT,
            plugins_dir=env.get("HOSTDEV_PLUGINS_DIR") or DEFAULT_PLUGINS_DIR,
            registry_dir=env.get("HOSTDEV_REGISTRY_DIR") or DEFAULT_REGISTRY_DIR,
        )


def needs_vfio(config: DevicesConfig) -> bool:
    """Whether the selection offers devices that go through VFIO (PCI, SR-IOV, vGPU)."""
    return bool(config.pci or config.sriov or config.mdev)


def iommu(root: HostRoot, needed: bool) -> Check:
    """IOMMU groups exist: PCI passthrough, SR-IOV in vfio mode and vGPU need them."""
    groups = iommu_groups(root)
    if groups:
        return Check("iommu", Status.OK, f"{groups} IOMMU groups")
    return Check(
        "iommu",
        Status.FAIL if needed else Status.WARN,
        f"{IOMMU_GROUPS} is empty: turn the IOMMU on (intel_iommu=on or amd_iommu=on on the "
        "kernel command line, VT-d/AMD-Vi in the firmware) for PCI, SR-IOV vfio and vGPU",
    )


def vfio_pci(root: HostRoot, needed: bool) -> Check:
    """vfio-pci is loaded (or built in): its driver directory or module is there."""
    if root.exists("/sys/bus/pci/drivers/vfio-pci") or root.exists("/sys/module/vfio_pci"):
        return Check("vfio-pci", Status.OK, "vfio-pci driver present")
    return Check(
        "vfio-pci",
        Status.FAIL if needed else Status.WARN,
        "vfio-pci is not loaded: modprobe vfio-pci (and add it to /etc/modules-load.d/)",
    )


def _writable_dir(root: HostRoot, host_path: str) -> str | None:
    """None when it is a writable directory, else what is wrong."""
    real = root.path(host_path)
    if not real.is_dir():
        return f"{host_path} does not exist"
    if not os.access(real, os.W_OK | os.X_OK):
        return f"{host_path} is not writable by this user"
    return None


def cdi_dirs(root: HostRoot, paths: Paths) -> Check:
    """The CDI writer's directory is writable; the runtime's static one exists."""
    problem = _writable_dir(root, paths.cdi_root)
    if problem is not None:
        return Check(
            "cdi directories",
            Status.FAIL,
            f"{problem}: the CDI writer needs it (mkdir -p {paths.cdi_root}; the runtime reads "
            "it, /var/run is a tmpfs recreated at boot)",
        )
    if not root.path(CDI_STATIC).is_dir():
        return Check(
            "cdi directories",
            Status.WARN,
            f"{paths.cdi_root} writable, {CDI_STATIC} missing (the runtime's static specs; "
            "not needed by this driver)",
        )
    return Check("cdi directories", Status.OK, f"{paths.cdi_root} writable, {CDI_STATIC} exists")


def _get(table: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(table, dict):
            return None
        table = table.get(key)
    return table


def containerd_cdi(config: dict[str, Any]) -> Check:
    """The containerd config's CDI setting, by config version."""
    version = config.get("version", 1)
    if version >= 3:
        enabled = _get(config, "plugins", CRI_V3, "enable_cdi")
        if enabled is False:
            return Check(
                "runtime cdi",
                Status.FAIL,
                f'containerd: enable_cdi = false under [plugins."{CRI_V3}"]; set it to true '
                "and restart containerd",
            )
        return Check("runtime cdi", Status.OK, "containerd 2.x: CDI on (the default)")
    enabled = _get(config, "plugins", CRI_V2, "enable_cdi")
    if enabled is True:
        return Check("runtime cdi", Status.OK, f'containerd: enable_cdi = true in "{CRI_V2}"')
    return Check(
        "runtime cdi",
        Status.FAIL,
        f"containerd (config version {version}): add enable_cdi = true and cdi_spec_dirs = "
        f'["/etc/cdi", "/var/run/cdi"] under [plugins."{CRI_V2}"] in {CONTAINERD_CONFIG}, '
        "then restart containerd",
    )


def runtime_cdi(root: HostRoot) -> Check:
    """containerd's config (CDI per version) or CRI-O (CDI always on since 1.23)."""
    config_path = root.path(CONTAINERD_CONFIG)
    if config_path.is_file():
        try:
            config = tomllib.loads(config_path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            return Check(
                "runtime cdi", Status.FAIL, f"{CONTAINERD_CONFIG} is not valid TOML: {err}"
            )
        return containerd_cdi(config)
    if any(root.exists(path) for path in CRIO_CONFIGS):
        return Check("runtime cdi", Status.OK, "CRI-O: CDI is always on (1.23 and later)")
    return Check(
        "runtime cdi",
        Status.WARN,
        f"neither {CONTAINERD_CONFIG} nor a CRI-O config found: make sure the container "
        "runtime has CDI on (containerd 2.x and CRI-O do by default)",
    )


def kubelet_dirs(root: HostRoot, paths: Paths, driver: str) -> Check:
    """The kubelet's plugin directories exist (it creates them when it starts)."""
    missing = [p for p in (paths.plugins_dir, paths.registry_dir) if not root.path(p).is_dir()]
    if missing:
        return Check(
            "kubelet plugin dirs",
            Status.FAIL,
            f"{', '.join(missing)} missing: is the kubelet running, with DRA (1.34+)? Check "
            "its --root-dir and the gateway's HOSTDEV_PLUGINS_DIR / HOSTDEV_REGISTRY_DIR",
        )
    socket = f"{paths.plugins_dir}/{driver}/dra.sock"
    found = "gateway socket present" if root.exists(socket) else "no gateway socket yet"
    return Check(
        "kubelet plugin dirs", Status.OK, f"{paths.plugins_dir}, {paths.registry_dir}; {found}"
    )


def nats_check(url: str, error: str | None) -> Check:
    """Whether the node's NATS answered."""
    if error is not None:
        return Check("nats", Status.FAIL, f"{error}: check the nats-leaf pod and HOSTDEV_NATS_URL")
    return Check("nats", Status.OK, f"connected to {url}")


def boot_check(
    root: HostRoot, records: Sequence[Recorded] | None, unread: str | None = None
) -> Check:
    """Checkpoints against this boot: earlier boots' claims are redone by the next prepare."""
    if unread is not None:
        return Check(
            "checkpoints",
            Status.FAIL,
            f"{unread}: use a NATS user that may read the bucket, and the leaf's JetStream "
            "domain (--js-domain)",
        )
    boot_id = current_boot_id(root)
    if not boot_id:
        return Check(
            "checkpoints",
            Status.FAIL,
            f"cannot read {root.path('/proc/sys/kernel/random/boot_id')}",
        )
    if records is None:
        return Check("checkpoints", Status.WARN, "not checked: NATS unreachable")
    earlier = [
        r
        for r in records
        if r.checkpoint.step == ClaimStep.COMPLETED and r.checkpoint.boot_id not in ("", boot_id)
    ]
    unfinished = [r for r in records if r.checkpoint.step != ClaimStep.COMPLETED]
    notes = []
    if earlier:
        notes.append(
            f"{len(earlier)} completed in an earlier boot (redone by the kubelet's next prepare, "
            "or `hostdev prepare NAMESPACE/NAME`)"
        )
    if unfinished:
        names = ", ".join(
            f"{r.checkpoint.claim.namespace}/{r.checkpoint.claim.name}" for r in unfinished
        )
        notes.append(
            f"{len(unfinished)} not finished ({names}; the next prepare or unprepare finishes them)"
        )
    if notes:
        return Check("checkpoints", Status.WARN, f"boot {boot_id}: " + "; ".join(notes))
    return Check("checkpoints", Status.OK, f"{len(records)} checkpoints, all from boot {boot_id}")


def render(checks: Sequence[Check]) -> str:
    """One line per check."""
    width = max(len(c.name) for c in checks)
    return "\n".join(f"{c.status.value:<4}  {c.name:<{width}}  {c.detail}" for c in checks)


def failed(checks: Sequence[Check]) -> bool:
    """Whether any check failed."""
    return any(c.status is Status.FAIL for c in checks)
