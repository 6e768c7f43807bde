"""hostdev simulate: claims against the node's own slices, through hostdev_scheduling.

Expected allocations follow the DRA documentation: an exclusive device goes to one claim,
a device published with allowMultipleAllocations to any number, a DeviceClass selects by
the driver's `family` attribute, and an unknown class or a CEL syntax error is bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hostdev_testing.cli import hostdev
from hostdev_testing.fakesysfs import SampleHost, SmallVm
from hostdev_testing.schemas import REPO_ROOT


def _claim(
    name: str, device_class: str, *, count: int = 1, cel: str | None = None
) -> dict[str, Any]:
    exactly: dict[str, Any] = {"deviceClassName": device_class, "count": count}
    if cel is not None:
        exactly["selectors"] = [{"cel": {"expression": cel}}]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"devices": {"requests": [{"name": "req", "exactly": exactly}]}},
    }


def _write(path: Path, *documents: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(documents))
    return path


async def test_tiny_claim_gets_kvm_on_the_small_vm(vm: SmallVm, tmp_path: Path) -> None:
    """One hostpath request on the VM gets the shared /dev/kvm, in the node's pool."""
    claims = _write(
        tmp_path / "claims.yaml",
        _claim(
            "vm",
            "hostpath.hostdev.k8s.io",
            cel='device.attributes["hostdev.k8s.io"].path == "/dev/kvm"',
        ),
    )
    ran = await hostdev(
        "simulate", "--claims", claims, "--root", vm.root, "--node", "vm-1", "--json"
    )
    assert ran.code == 0, ran.err
    assert ran.json() == [
        {
            "namespace": "default",
            "name": "vm",
            "alreadyAllocated": False,
            "devices": [
                {
                    "request": "req",
                    "driver": "hostdev.k8s.io",
                    "pool": "vm-1",
                    "device": "kvm",
                    "adminAccess": False,
                }
            ],
            "error": None,
        }
    ]


async def test_a_pci_claim_on_the_small_vm_is_unsatisfiable_and_exits_1(
    vm: SmallVm, tmp_path: Path
) -> None:
    """No IOMMU, no PCI device: the claim says which request failed and why."""
    claims = _write(tmp_path / "claims.yaml", _claim("gpu", "pci.hostdev.k8s.io"))
    ran = await hostdev("simulate", "--claims", claims, "--root", vm.root, "--node", "vm-1")
    assert ran.code == 1
    assert ran.out.splitlines() == [
        "CLAIM        REQUEST  DEVICE  RESULT",
        "default/gpu  -        -       unsatisfiable: request req: no device matches DeviceClass pci.hostdev.k8s.io",
    ]


async def test_shared_devices_serve_many_claims_and_exclusive_ones_only_the_first(
    demo: tuple[SampleHost, Path], tmp_path: Path
) -> None:
    """Two claims on shared kvm both get it; two on the one exclusive udmabuf: the second fails."""
    sample, selection = demo
    path_is = 'device.attributes["hostdev.k8s.io"].path == "{}"'
    claims = _write(
        tmp_path / "claims.yaml",
        _claim("vm-a", "hostpath.hostdev.k8s.io", cel=path_is.format("/dev/kvm")),
        _claim("vm-b", "hostpath.hostdev.k8s.io", cel=path_is.format("/dev/kvm")),
        _claim("buf-a", "hostpath.hostdev.k8s.io", cel=path_is.format("/dev/udmabuf")),
        _claim("buf-b", "hostpath.hostdev.k8s.io", cel=path_is.format("/dev/udmabuf")),
    )
    ran = await hostdev(
        "simulate",
        "--claims",
        claims,
        "--root",
        sample.root,
        "--config",
        selection,
        "--node",
        "demo-node",
        "--json",
    )
    assert ran.code == 1
    got = {o["name"]: ([d["device"] for d in o["devices"]], o["error"]) for o in ran.json()}
    assert got["vm-a"] == (["kvm"], None)
    assert got["vm-b"] == (["kvm"], None)
    assert got["buf-a"] == (["udmabuf"], None)
    assert got["buf-b"][0] == []
    assert got["buf-b"][1] is not None


async def test_every_vf_of_the_pf_by_count_then_one_too_many(
    demo: tuple[SampleHost, Path], tmp_path: Path
) -> None:
    """The sriov class has the four VFs: count 4 is satisfied, a fifth VF is not."""
    sample, selection = demo
    claims = _write(
        tmp_path / "claims.yaml",
        _claim("four", "sriov-vf.hostdev.k8s.io", count=4),
        _claim("fifth", "sriov-vf.hostdev.k8s.io"),
    )
    ran = await hostdev(
        "simulate",
        "--claims",
        claims,
        "--root",
        sample.root,
        "--config",
        selection,
        "--node",
        "demo-node",
        "--json",
    )
    four, fifth = ran.json()
    assert sorted(d["device"] for d in four["devices"]) == [
        f"vf-{vf.replace(':', '-').replace('.', '-')}" for vf in sample.vfs
    ]
    assert fifth["error"] is not None


async def test_inventory_json_and_slices_yaml_are_inventories_too(
    vm: SmallVm, tmp_path: Path
) -> None:
    """`inventory --json` output and `slices` YAML give the same answer as scanning the root."""
    claims = _write(tmp_path / "claims.yaml", _claim("vm", "hostdev.k8s.io", count=2))
    inventory = tmp_path / "inventory.json"
    inventory.write_text((await hostdev("inventory", "--root", vm.root, "--json")).out)
    slices = tmp_path / "slices.yaml"
    slices.write_text((await hostdev("slices", "--root", vm.root, "--node", "vm-1")).out)
    answers = [
        (await hostdev("simulate", "--claims", claims, *source, "--node", "vm-1", "--json")).json()
        for source in (
            ["--root", str(vm.root)],
            ["--inventory", str(inventory)],
            ["--inventory", str(slices)],
        )
    ]
    assert answers[0] == answers[1] == answers[2]
    assert sorted(d["device"] for d in answers[0][0]["devices"]) == ["kvm", "tun"]


async def test_a_class_given_with_classes_replaces_the_drivers_class_of_that_name(
    vm: SmallVm, tmp_path: Path
) -> None:
    """--classes wins over the shipped class of the same name."""
    only_tun = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": "hostpath.hostdev.k8s.io"},
        "spec": {
            "selectors": [
                {
                    "cel": {
                        "expression": 'device.attributes["hostdev.k8s.io"].path == "/dev/net/tun"'
                    }
                }
            ]
        },
    }
    classes = _write(tmp_path / "classes.yaml", only_tun)
    claims = _write(tmp_path / "claims.yaml", _claim("net", "hostpath.hostdev.k8s.io"))
    ran = await hostdev(
        "simulate",
        "--claims",
        claims,
        "--classes",
        classes,
        "--root",
        vm.root,
        "--node",
        "vm-1",
        "--json",
    )
    assert [d["device"] for d in ran.json()[0]["devices"]] == ["tun"]


async def test_malformed_claims_file_is_one_line_with_the_position_and_exit_2(
    vm: SmallVm, tmp_path: Path
) -> None:
    """Broken YAML names the file, the problem and where."""
    claims = tmp_path / "claims.yaml"
    claims.write_text("kind: ResourceClaim\nmetadata: [\n")
    ran = await hostdev("simulate", "--claims", claims, "--root", vm.root)
    assert ran.code == 2
    assert ran.err.startswith(f"hostdev simulate: {claims}: not valid YAML: ")
    assert "line 3" in ran.err
    assert ran.err.count("\n") == 1


async def test_unknown_device_class_is_exit_2_naming_claim_and_class(
    vm: SmallVm, tmp_path: Path
) -> None:
    """A class that exists neither in the files nor among the driver's is bad input."""
    claims = _write(tmp_path / "claims.yaml", _claim("x", "gpu.example.com"))
    ran = await hostdev("simulate", "--claims", claims, "--root", vm.root)
    assert ran.code == 2
    assert ran.err == (
        f"hostdev simulate: {claims}: ResourceClaim default/x request req: "
        "DeviceClass 'gpu.example.com' is not in the input\n"
    )


async def test_cel_syntax_error_is_exit_2_naming_the_expression(
    vm: SmallVm, tmp_path: Path
) -> None:
    """An expression that does not parse is refused before anything is allocated."""
    claims = _write(
        tmp_path / "claims.yaml", _claim("x", "hostpath.hostdev.k8s.io", cel="device.driver == ")
    )
    ran = await hostdev("simulate", "--claims", claims, "--root", vm.root)
    assert ran.code == 2
    assert ran.err.startswith(
        f"hostdev simulate: {claims}: ResourceClaim default/x request req selector #0: "
        "CEL expression 'device.driver == ' does not compile: "
    )
    assert ran.out == ""


async def test_an_inventory_file_of_other_objects_is_exit_2(vm: SmallVm, tmp_path: Path) -> None:
    """--inventory must hold slices or inventory output."""
    claims = _write(tmp_path / "claims.yaml", _claim("x", "hostdev.k8s.io"))
    other = _write(
        tmp_path / "pods.yaml", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    )
    ran = await hostdev("simulate", "--claims", claims, "--inventory", other)
    assert (ran.code, ran.err) == (
        2,
        f"hostdev simulate: {other}: expected ResourceSlices or `hostdev inventory --json` output, found Pod\n",
    )


def test_shipped_device_classes_are_the_deployments_own() -> None:
    """The command's default classes are a copy of k8s/base/deviceclasses.yaml, kept identical."""
    shipped = REPO_ROOT / "services/cli/src/hostdev_cli/deviceclasses.yaml"
    assert shipped.read_text() == (REPO_ROOT / "k8s/base/deviceclasses.yaml").read_text()
