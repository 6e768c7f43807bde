"""A fake sysfs/devfs with the kernel's exact layout, and a fake kernel that reacts to writes.

`FakeSysfs` builds the tree, `FakeKernel` is a `hostdev_sysfs.SysfsWriter` that binds,
unbinds and creates mdevs in it, `snapshot` pictures it for before/after comparisons, and
`samples` holds ready-made hosts.
"""

from hostdev_testing.fakesysfs.attributes import vf_bdfs
from hostdev_testing.fakesysfs.builder import FakeSysfs, MdevType
from hostdev_testing.fakesysfs.kernel import FakeKernel
from hostdev_testing.fakesysfs.samples import (
    NumaHost,
    SampleHost,
    SmallVm,
    acceptance_host,
    small_vm,
    two_numa_host,
)
from hostdev_testing.fakesysfs.tree import snapshot

__all__ = [
    "FakeKernel",
    "FakeSysfs",
    "MdevType",
    "NumaHost",
    "SampleHost",
    "SmallVm",
    "acceptance_host",
    "small_vm",
    "snapshot",
    "two_numa_host",
    "vf_bdfs",
]
