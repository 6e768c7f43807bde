"""hostdev doctor: one line per check under the root, exit 1 when one fails."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hostdev_testing.cli import hostdev
from hostdev_testing.fakesysfs import SampleHost, SmallVm

CONTAINERD_2 = 'version = 3\n[plugins."io.containerd.cri.v1.runtime"]\n  enable_cdi = true\n'
CONTAINERD_17_OFF = (
    'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "pause"\n'
)
CONTAINERD_17_ON = 'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  enable_cdi = true\n'


def _ready(root: Path, containerd: str = CONTAINERD_2) -> None:
    """What a prepared node has besides its devices: CDI, kubelet dirs, runtime config, boot ID."""
    for directory in (
        "var/run/cdi",
        "etc/cdi",
        "var/lib/kubelet/plugins",
        "var/lib/kubelet/plugins_registry",
    ):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "etc/containerd").mkdir(parents=True, exist_ok=True)
    (root / "etc/containerd/config.toml").write_text(containerd)
    boot = root / "proc/sys/kernel/random/boot_id"
    boot.parent.mkdir(parents=True, exist_ok=True)
    boot.write_text("0c6f5f0e-8d3a-4e55-9a4c-2b1f7e9d3c21\n")


def _lines(out: str) -> dict[str, str]:
    """check name -> its status word."""
    found = {}
    for line in out.splitlines():
        status, rest = line.split(maxsplit=1)
        name = rest.split("  ", 1)[0].strip()
        found[name] = status
    return found


def _host_paths_only(directory: Path) -> Path:
    """A selection without VFIO devices: the IOMMU and vfio-pci checks only warn."""
    selection = directory / "devices.yaml"
    selection.write_text("hostPaths: [{path: /dev/kvm, name: kvm, shared: true}]\n")
    return selection


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"nats://127.0.0.1:{port}"


async def test_a_ready_kvm_host_passes_every_check(
    demo: tuple[SampleHost, Path], nats_url: str
) -> None:
    """IOMMU, vfio-pci, CDI, containerd 2.x, NATS, kubelet dirs, checkpoints: all ok, exit 0."""
    sample, selection = demo
    _ready(sample.root)
    ran = await hostdev(
        "doctor", "--root", sample.root, "--config", selection, "--nats", nats_url, "--node", "n-1"
    )
    assert ran.code == 0, ran.out
    assert _lines(ran.out) == {
        "iommu": "ok",
        "vfio-pci": "ok",
        "cdi directories": "ok",
        "runtime cdi": "ok",
        "nats": "ok",
        "kubelet plugin dirs": "ok",
        "checkpoints": "ok",
    }


async def test_small_vm_fails_on_cdi_and_kubelet_and_says_what_to_do(vm: SmallVm) -> None:
    """No IOMMU and no vfio-pci fail (the default selection wants PCI); each line says what to do."""
    ran = await hostdev(
        "doctor", "--root", vm.root, "--nats", _closed_port_url(), "--node", "vm-1", "--json"
    )
    assert ran.code == 1
    checks = {c["check"]: c for c in ran.json()}
    assert checks["iommu"]["status"] == "FAIL"
    assert "intel_iommu=on" in checks["iommu"]["detail"]
    assert "modprobe vfio-pci" in checks["vfio-pci"]["detail"]
    assert checks["cdi directories"]["detail"].startswith("/var/run/cdi does not exist")
    assert checks["nats"]["status"] == "FAIL"
    assert checks["checkpoints"] == {
        "check": "checkpoints",
        "status": "warn",
        "detail": "not checked: NATS unreachable",
    }
    assert checks["kubelet plugin dirs"]["status"] == "FAIL"


async def test_iommu_is_only_a_warning_when_the_selection_has_no_vfio_devices(
    vm: SmallVm, nats_url: str, tmp_path: Path
) -> None:
    """A host-paths-only node does not need the IOMMU: warn, and the node is ready."""
    _ready(vm.root)
    selection = _host_paths_only(tmp_path)
    ran = await hostdev(
        "doctor", "--root", vm.root, "--config", selection, "--nats", nats_url, "--node", "vm-1"
    )
    assert ran.code == 0, ran.out
    assert _lines(ran.out)["iommu"] == "warn"
    assert _lines(ran.out)["vfio-pci"] == "warn"


@pytest.mark.parametrize(
    ("config", "status"),
    [
        (CONTAINERD_17_OFF, "FAIL"),
        (CONTAINERD_17_ON, "ok"),
        (CONTAINERD_2, "ok"),
        ("version = [", "FAIL"),
    ],
)
async def test_containerd_cdi_setting_by_config_version(
    vm: SmallVm, nats_url: str, tmp_path: Path, config: str, status: str
) -> None:
    """containerd 1.7 needs enable_cdi = true; 2.x has it on; a broken file is a failure."""
    _ready(vm.root, containerd=config)
    ran = await hostdev(
        "doctor",
        "--root",
        vm.root,
        "--config",
        _host_paths_only(tmp_path),
        "--nats",
        nats_url,
        "--node",
        "vm-1",
        "--json",
    )
    (check,) = [c for c in ran.json() if c["check"] == "runtime cdi"]
    assert check["status"] == status
    assert ran.code == (0 if status == "ok" else 1)
    if config == CONTAINERD_17_OFF:
        assert "add enable_cdi = true" in check["detail"]


async def test_crio_node_passes_the_runtime_check(
    vm: SmallVm, nats_url: str, tmp_path: Path
) -> None:
    """CRI-O always has CDI on."""
    _ready(vm.root)
    (vm.root / "etc/containerd/config.toml").unlink()
    (vm.root / "etc/crio/crio.conf.d").mkdir(parents=True)
    ran = await hostdev(
        "doctor",
        "--root",
        vm.root,
        "--config",
        _host_paths_only(tmp_path),
        "--nats",
        nats_url,
        "--node",
        "vm-1",
        "--json",
    )
    (check,) = [c for c in ran.json() if c["check"] == "runtime cdi"]
    assert check == {
        "check": "runtime cdi",
        "status": "ok",
        "detail": "CRI-O: CDI is always on (1.23 and later)",
    }
    assert ran.code == 0


async def test_doctor_never_prints_the_nats_password(vm: SmallVm) -> None:
    """Credentials in the URL stay out of the output."""
    url = _closed_port_url().replace("nats://", "nats://discovery:s3cret@")
    ran = await hostdev("doctor", "--root", vm.root, "--nats", url, "--node", "vm-1")
    assert "s3cret" not in ran.out + ran.err
    assert "discovery:***@127.0.0.1" in ran.out


async def test_checkpoints_fail_when_the_bucket_cannot_be_read(
    demo: tuple[SampleHost, Path], nats_url: str
) -> None:
    """NATS answers but no JetStream serves that domain: the checkpoints line says what to fix."""
    sample, selection = demo
    _ready(sample.root)
    ran = await hostdev(
        "doctor",
        "--root",
        sample.root,
        "--config",
        selection,
        "--nats",
        nats_url,
        "--js-domain",
        "no-such-domain",
        "--node",
        "n-1",
        "--json",
    )
    assert ran.code == 1
    checks = {c["check"]: c for c in ran.json()}
    assert checks["nats"]["status"] == "ok"
    assert checks["checkpoints"]["status"] == "FAIL"
    assert checks["checkpoints"]["detail"].startswith("cannot open hostdev-checkpoints: ")


async def test_a_node_name_kubernetes_would_refuse_is_exit_2(vm: SmallVm) -> None:
    """The services refuse such a name; so does the command, before doing anything."""
    ran = await hostdev("doctor", "--root", vm.root, "--node", "Bad_Name")
    assert (ran.code, ran.err) == (
        2,
        "hostdev doctor: 'Bad_Name' is not a valid Kubernetes node name; give one with --node\n",
    )
