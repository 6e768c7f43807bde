"""A family's plan for one device: what prepare will do on the host, and how to undo it.

One plan type per family, a msgspec union tagged by `family`. A plan is made read-only
(`Family.plan`), recorded in the claim's checkpoint, then carried out (`Family.apply`, which
returns it with its final edits) and later undone (`Family.unprepare`) from the record, so a
crash between any two steps never loses what must be restored (an original driver, an mdev
UUID). The record is versioned with its checkpoint: see hostdev_events.state for the rules.
"""

from __future__ import annotations

import msgspec

from hostdev_events.inventory import Attribute, ContainerEdits


class Plan(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="family"):
    """What every plan records: the device, the edits to hand over, what the workload learns."""

    device: str
    edits: ContainerEdits = ContainerEdits()
    # What the workload learns about the device (KEP-5304 metadata): the published
    # attributes plus what only prepare knows, such as a created mdev's UUID.
    attributes: dict[str, Attribute] = {}
    # The edits are already the final ones (a PCI group, a host path), so the spec can be
    # written before the host actions run; false while apply has still to find them out.
    final_edits: bool = True

    @property
    def family(self) -> str:
        """The family whose plan this is: the record's tag."""
        return str(type(self).__struct_config__.tag)

    @property
    def observe_only(self) -> bool:
        """Nothing is done or undone on the host for this device."""
        return False


class FunctionDriver(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A PCI function and the driver (and driver_override) it had before prepare moved it."""

    address: str
    driver: str = ""  # none bound
    override: str = ""  # none set


class VfValues(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A VF's administrative settings; None leaves one alone."""

    mac: str | None = None
    vlan: int | None = None
    trust: bool | None = None


class HostPathPlan(Plan, frozen=True, kw_only=True, omit_defaults=True, tag="hostpath"):
    """A host path: handed over as it is, nothing to do or undo."""


class UsbPlan(Plan, frozen=True, kw_only=True, omit_defaults=True, tag="usb"):
    """A USB device: its node is handed over, nothing to do or undo."""

    port: str = ""
    busnum: int = 0
    devnum: int = 0
    node: str = ""


class PciPlan(Plan, frozen=True, kw_only=True, omit_defaults=True, tag="pci"):
    """A PCI function passed through: every member of its IOMMU group goes to vfio-pci and
    back to the driver recorded here."""

    group: int
    members: tuple[FunctionDriver, ...]


class SriovPlan(Plan, frozen=True, kw_only=True, omit_defaults=True, tag="sriov"):
    """A VF: to vfio-pci with its group (`vfio`), or kept on its network driver with its
    interface moved into the container (`netdevice`); settings applied on its PF."""

    mode: str  # vfio | netdevice
    address: str
    pf: str
    pf_ifname: str
    vf_index: int
    group: int | None = None
    members: tuple[FunctionDriver, ...] = ()  # vfio: the group's; netdevice: the VF alone
    interface: str = ""  # the interface's name in the container
    want: VfValues = VfValues()  # settings the claim asked for
    was: VfValues = VfValues()  # the PF's settings for the VF before, to put back
    read_mac: str = ""  # the interface's own MAC, read at apply when none was asked for


class MdevPlan(Plan, frozen=True, kw_only=True, omit_defaults=True, tag="mdev"):
    """A mediated device created for the claim and removed after it."""

    parent: str
    type: str
    uuid: str  # chosen at plan, before creation, so a crash can still remove it
    group: int | None = None  # known once it exists


class ObservedPlan(Plan, frozen=True, kw_only=True, omit_defaults=True, tag="observed"):
    """adminAccess: the device is handed over for monitoring, possibly while another claim
    uses it; it is neither reserved nor reconfigured, so nothing is done or undone."""

    of: str  # the device's family

    @property
    def family(self) -> str:
        return self.of

    @property
    def observe_only(self) -> bool:
        return True


AnyPlan = HostPathPlan | UsbPlan | PciPlan | SriovPlan | MdevPlan | ObservedPlan
