"""hostdev slices: what discovery would publish, valid against resource.k8s.io/v1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hostdev_testing.apiserver.schema import OpenApi
from hostdev_testing.cli import hostdev
from hostdev_testing.fakesysfs import SampleHost, SmallVm
from hostdev_testing.schemas import schemas_dir


def _schema_errors(documents: list[dict[str, Any]]) -> list[str]:
    validator = OpenApi.load(schemas_dir()).validator("io.k8s.api.resource.v1.ResourceSlice")
    return [e.message for doc in documents for e in validator.iter_errors(doc)]


async def test_demo_host_slices_are_valid_resource_slices_with_every_device(
    demo: tuple[SampleHost, Path],
) -> None:
    """Every document validates; devices and the vGPU counters are in the node's pool."""
    sample, selection = demo
    ran = await hostdev(
        "slices", "--root", sample.root, "--config", selection, "--node", "demo-node"
    )
    assert ran.code == 0, ran.err
    documents = list(yaml.safe_load_all(ran.out))
    assert _schema_errors(documents) == []
    specs = [d["spec"] for d in documents]
    assert {s["nodeName"] for s in specs} == {"demo-node"}
    assert {s["pool"]["resourceSliceCount"] for s in specs} == {len(documents)}
    devices = {d["name"] for s in specs for d in s.get("devices", [])}
    inventory = (
        await hostdev("inventory", "--root", sample.root, "--config", selection, "--json")
    ).json()
    assert devices == {d["name"] for d in inventory["devices"]}
    assert any("sharedCounters" in s for s in specs)  # the iGPU's mdev capacity


async def test_small_vm_publishes_one_slice_with_kvm_and_tun(vm: SmallVm) -> None:
    """The VM's pool is one slice: two shared host paths, named for the node given."""
    ran = await hostdev("slices", "--root", vm.root, "--node", "vm-1", "--json")
    assert ran.code == 0, ran.err
    (only,) = ran.json()
    assert _schema_errors([only]) == []
    assert only["metadata"]["generateName"] == "vm-1-hostdev.k8s.io-"
    assert [(d["name"], d.get("allowMultipleAllocations")) for d in only["spec"]["devices"]] == [
        ("kvm", True),
        ("tun", True),
    ]


async def test_driver_name_comes_from_the_flag(vm: SmallVm) -> None:
    """--driver names the slices' driver, as HOSTDEV_DRIVER_NAME does for discovery."""
    ran = await hostdev("slices", "--root", vm.root, "--node", "vm-1", "--driver", "x.example.com")
    (only,) = yaml.safe_load_all(ran.out)
    assert only["spec"]["driver"] == "x.example.com"


async def test_slices_of_a_root_that_is_not_linux_is_exit_2(tmp_path: Path) -> None:
    """The same root check as inventory."""
    (tmp_path / "sys").mkdir()
    ran = await hostdev("slices", "--root", tmp_path)
    assert (ran.code, ran.err) == (
        2,
        f"hostdev slices: {tmp_path}: not a Linux root (no dev directory)\n",
    )
