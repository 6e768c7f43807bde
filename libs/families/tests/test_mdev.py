"""Mediated devices on the fake kernel: the types offered, create on prepare, remove on undo."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from hostdev_devconfig import MdevSelector
from hostdev_events.inventory import Attribute, Device
from hostdev_families import FamilyError, HostRefused
from hostdev_families.mdev import MdevFamily
from hostdev_sysfs import HostRoot
from hostdev_testing.fakesysfs import FakeKernel, SampleHost, acceptance_host, snapshot

V5_4, V5_8 = "i915-GVTg_V5_4", "i915-GVTg_V5_8"


@pytest.fixture
def sample(tmp_path: Path) -> SampleHost:
    return acceptance_host(tmp_path / "root")


def _family(sample: SampleHost, kernel: FakeKernel) -> MdevFamily:
    return MdevFamily(HostRoot(sample.root), kernel, (MdevSelector(parent=sample.igpu),))


def _of_type(family: MdevFamily, mdev_type: str) -> list[Device]:
    return [d for d in family.discover() if d.params["type"] == mdev_type]


def _instances(sample: SampleHost) -> list[str]:
    bus = sample.root / "sys/bus/mdev/devices"
    return sorted(p.name for p in bus.iterdir()) if bus.is_dir() else []


def test_discovery_offers_one_device_per_instance_sharing_the_parents_capacity(
    sample: SampleHost,
) -> None:
    """Two V5_4 and four V5_8 slots, each naming its type and parent; all consume one
    counter set of the parent sized so that a V5_4 costs what two V5_8 cost."""
    family = _family(sample, FakeKernel(sample.root))
    v54, v58 = _of_type(family, V5_4), _of_type(family, V5_8)
    assert (len(v54), len(v58)) == (sample.mdev_types[V5_4], sample.mdev_types[V5_8])
    first = v54[0]
    assert first.attributes["mdevType"] == Attribute(string=V5_4)
    assert first.attributes["mdevName"] == Attribute(string="GVTg_V5_4")
    assert first.attributes["resource.kubernetes.io/pciBusID"] == Attribute(string=sample.igpu)
    assert (first.attributes["vendorID"], first.attributes["deviceID"]) == (
        Attribute(string="8086"),
        Attribute(string="3e92"),
    )
    assert first.attributes["numaNode"] == Attribute(int_=0)
    ((big,), (small,)) = (first.consumes, v58[0].consumes)
    assert big.counter_set == small.counter_set
    assert (big.capacity, big.value, small.value) == (4, 2, 1)


def test_prepare_creates_the_mdev_and_unprepare_removes_it_leaving_the_tree_as_it_was(
    sample: SampleHost,
) -> None:
    """Apply creates one instance of the type and hands over its IOMMU group's VFIO node;
    unprepare removes it and the tree is identical to before; a second unprepare does nothing."""
    kernel = FakeKernel(sample.root)
    family = _family(sample, kernel)
    before = snapshot(sample.root)
    applied = family.apply(family.plan(_of_type(family, V5_8)[0], "claim-1", {}))
    (instance,) = _instances(sample)
    group = (sample.root / f"sys/bus/mdev/devices/{instance}/iommu_group").resolve().name
    assert [n.path for n in applied.edits.device_nodes] == ["/dev/vfio/vfio", f"/dev/vfio/{group}"]
    assert applied.attributes["mdevUUID"] == Attribute(string=instance)
    family.unprepare(applied)
    assert snapshot(sample.root) == before
    writes = len(kernel.writes)
    family.unprepare(applied)
    assert len(kernel.writes) == writes


def test_a_refused_create_is_a_host_refusal_that_leaves_nothing_behind(sample: SampleHost) -> None:
    """The kernel refuses the create (the vGPU is out of resources): HostRefused with the
    errno and the type, and no instance exists."""
    kernel = FakeKernel(sample.root)
    family = _family(sample, kernel)
    before = snapshot(sample.root)
    plan = family.plan(_of_type(family, V5_4)[0], "claim-1", {})
    create = f"/sys/bus/pci/devices/{sample.igpu}/mdev_supported_types/{V5_4}/create"
    kernel.refuse(create, errno.EDQUOT)
    with pytest.raises(HostRefused, match=f"{V5_4} on {sample.igpu}: EDQUOT"):
        family.apply(plan)
    assert snapshot(sample.root) == before


def test_no_instance_left_is_refused_before_writing(sample: SampleHost) -> None:
    """Both V5_4 instances taken by earlier claims: a third plan's apply refuses without a
    write to the kernel; the two earlier instances stay."""
    kernel = FakeKernel(sample.root)
    family = _family(sample, kernel)
    slots = _of_type(family, V5_4)
    for n, slot in enumerate(slots):
        family.apply(family.plan(slot, f"claim-{n}", {}))
    writes = len(kernel.writes)
    with pytest.raises(HostRefused, match="no instance"):
        family.apply(family.plan(slots[0], "claim-late", {}))
    assert len(kernel.writes) == writes
    assert len(_instances(sample)) == 2


def test_removing_an_mdev_in_use_fails_until_it_is_released(sample: SampleHost) -> None:
    """While QEMU holds the mdev, remove is EBUSY: unprepare raises, and succeeds on retry."""
    kernel = FakeKernel(sample.root)
    family = _family(sample, kernel)
    before = snapshot(sample.root)
    applied = family.apply(family.plan(_of_type(family, V5_8)[0], "claim-1", {}))
    (instance,) = _instances(sample)
    kernel.busy(instance)
    with pytest.raises(FamilyError, match="EBUSY"):
        family.unprepare(applied)
    kernel.release(instance)
    family.unprepare(applied)
    assert snapshot(sample.root) == before


def test_configuration_for_an_mdev_is_refused(sample: SampleHost) -> None:
    """An mdev takes no opaque parameters; a key is an error before anything is created."""
    kernel = FakeKernel(sample.root)
    family = _family(sample, kernel)
    with pytest.raises(FamilyError, match="takes no configuration"):
        family.plan(_of_type(family, V5_8)[0], "claim-1", {"profile": "big"})
    assert kernel.writes == []


class _ChangesWhileRescanning(HostRoot):
    """A host where, right after the rescan reads `attribute`, the kernel takes the next of
    `changes` (our own prepare or unprepare, in its thread): after that read and before the
    rescan lists the type's devices."""

    def __init__(self, root: Path, attribute: str, changes: list[tuple[str, str]]) -> None:
        super().__init__(root)
        self.kernel = FakeKernel(root)
        self.attribute, self.changes = attribute, changes

    def read_text(self, host_path: str) -> str:
        value = super().read_text(host_path)
        if host_path == self.attribute and self.changes:
            self.kernel.write(*self.changes.pop(0))
        return value


def _rescanning(
    sample: SampleHost, mdev_type: str, changes: list[str]
) -> tuple[MdevFamily, _ChangesWhileRescanning]:
    """A family over a host where each write of `changes` (a create with a UUID, or a
    remove) lands between the two reads of `mdev_type`'s counts."""
    path = f"/sys/class/mdev_bus/{sample.igpu}/mdev_supported_types/{mdev_type}"
    writes = [
        (f"/sys/bus/mdev/devices/{c.removeprefix('remove:')}/remove", "1")
        if c.startswith("remove:")
        else (f"{path}/create", c)
        for c in changes
    ]
    root = _ChangesWhileRescanning(sample.root, f"{path}/available_instances", writes)
    return MdevFamily(root, root.kernel, (MdevSelector(parent=sample.igpu),)), root


def test_an_instance_created_between_the_reads_of_a_rescan_does_not_change_the_capacity(
    sample: SampleHost,
) -> None:
    """available_instances read before the create, the devices listed after it: counted
    in both, the type would be published with three slots; the survey reads again."""
    family, root = _rescanning(sample, V5_4, ["4b20d080-1b54-4048-85b3-a6a62d165c01"])
    v54 = _of_type(family, V5_4)
    assert root.changes == []  # the create did land between the two reads
    assert len(_instances(sample)) == 1
    assert len(v54) == sample.mdev_types[V5_4] == 2
    assert v54[0].consumes[0].capacity == 4


def test_an_instance_removed_between_the_reads_of_a_rescan_does_not_change_the_capacity(
    sample: SampleHost,
) -> None:
    """The other way round: read before the remove, listed after it, counted in neither,
    and the type would be published with one slot."""
    prepared = _family(sample, FakeKernel(sample.root))
    prepared.apply(prepared.plan(_of_type(prepared, V5_4)[0], "claim-1", {}))
    (instance,) = _instances(sample)
    family, root = _rescanning(sample, V5_4, [f"remove:{instance}"])
    assert len(_of_type(family, V5_4)) == 2
    assert root.changes == []
    assert _instances(sample) == []


def test_a_type_that_changes_at_every_read_is_published_with_its_most_cautious_count(
    sample: SampleHost,
) -> None:
    """A create lands after every read but the last: no two reads agree, and after a
    bounded number of them the smallest maximum seen is taken, never one too many."""
    uuids = [f"4b20d080-1b54-4048-85b3-a6a62d165c1{n}" for n in range(4)]
    family, root = _rescanning(sample, V5_8, uuids)
    assert len(_of_type(family, V5_8)) == sample.mdev_types[V5_8] == 4
    assert root.changes == []
