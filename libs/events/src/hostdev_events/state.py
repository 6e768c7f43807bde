"""Checkpoint records kept in JetStream KV, one per node and claim."""

from __future__ import annotations

import enum

import msgspec

from hostdev_events.claims import ClaimOutcome, ClaimRef
from hostdev_events.inventory import Attribute, ContainerEdits, CounterUse


class ClaimStep(enum.StrEnum):
    """Steps of the claim state machine, recorded before and after each action."""

    # Devices chosen and every host action planned (with what undoes it), recorded
    # before anything is reserved or touched; a crash here is finished by the next call.
    PREPARING = "preparing"
    COMPLETED = "completed"  # reserved, host actions done, specs written, outcome recorded
    UNPREPARING = "unpreparing"  # undo started; the next call finishes it


class AllocatedDevice(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One allocation result of this driver on this node, as read from the claim."""

    request: str  # top-level request name (subrequest stripped)
    pool: str
    device: str
    family: str = ""
    shareable: bool = False  # published with allowMultipleAllocations
    consumes: tuple[CounterUse, ...] = ()
    also_holds: tuple[str, ...] = ()
    admin_access: bool = False
    share_id: str | None = None
    # KEP-5075: the device's consumable capacities (totals) and what this share takes.
    capacity: dict[str, int] = {}
    consumed: dict[str, int] = {}


class HostUndo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A family's plan for one device: what it will do, how to undo it, and the edits.

    Planned (read-only) before the checkpoint records it, applied after, so a crash
    between the two never loses what must be restored (an original driver, an mdev UUID).
    """

    device: str
    family: str
    data: dict[str, str] = {}
    edits: ContainerEdits = ContainerEdits()
    # What the workload learns about the device (KEP-5304 metadata): the published
    # attributes plus what only prepare knows, such as a created mdev's UUID.
    attributes: dict[str, Attribute] = {}
    # The edits are already the final ones (a PCI group, a host path), so the spec can be
    # written before the host actions run; false while apply has still to find them out.
    final_edits: bool = True
    # adminAccess: the device is handed over for monitoring, possibly while another claim
    # uses it; it is neither reserved nor reconfigured, so nothing is done or undone.
    observe_only: bool = False


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Where one claim stands on this node (KV value `checkpoint.v1`)."""

    version: int = 1
    claim: ClaimRef
    step: ClaimStep
    claim_generation: int = 0
    pod_claim_name: str = ""  # set for claims made from a template (KEP-5304 paths)
    # The node's boot when the claim was completed: CDI specs (tmpfs), vfio bindings and
    # mdevs do not survive a reboot, so a completed claim from another boot is redone.
    boot_id: str = ""
    devices: tuple[AllocatedDevice, ...] = ()
    undo: tuple[HostUndo, ...] = ()
    outcome: ClaimOutcome | None = None
    # W3C traceparent of the prepare's span: the unprepare, a separate kubelet call, continues
    # that trace, so one claim's life is one trace. Empty when tracing is off.
    trace_context: str = ""
