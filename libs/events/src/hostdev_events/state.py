"""Checkpoint records kept in JetStream KV, one per node and claim.

Versions. `version` tags each record: 1 (absent: version-1 writers left it out) kept plans
as untagged `undo` records with string maps; 2 keeps typed `plans` (hostdev_events.plans).
The rule for changing the stored form:

- Compatible (no new version): a new field with a default that means "as before", in a
  checkpoint or a plan; a new plan type with a new tag. Old records decode with the
  default; an older reader ignores the field (msgspec skips unknown fields), so a rollback
  still reads new records as long as it need not act on the new field.
- Incompatible (bump CHECKPOINT_VERSION): renaming, removing or retyping a field, changing
  a field's meaning or a tag. Keep the old form as a struct in hostdev_events.upgrade with
  its translation, applied in Checkpoint.__post_init__, and a test that reads records the
  old version wrote (captured from it, never hand-made). A record from a newer version than
  the reader knows is refused, never guessed at.
"""

from __future__ import annotations

import enum

import msgspec

from hostdev_events.claims import ClaimOutcome, ClaimRef
from hostdev_events.inventory import CounterUse
from hostdev_events.plans import AnyPlan
from hostdev_events.upgrade import PlanV1, plan_from_v1

CHECKPOINT_VERSION = 2


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


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Where one claim stands on this node (KV value, version CHECKPOINT_VERSION)."""

    version: int = 1  # the default is what a version-1 record (which omits it) means
    claim: ClaimRef
    step: ClaimStep
    claim_generation: int = 0
    pod_claim_name: str = ""  # set for claims made from a template (KEP-5304 paths)
    # The node's boot when the claim was completed: CDI specs (tmpfs), vfio bindings and
    # mdevs do not survive a reboot, so a completed claim from another boot is redone.
    boot_id: str = ""
    devices: tuple[AllocatedDevice, ...] = ()
    plans: tuple[AnyPlan, ...] = ()  # one per device, in the order they are applied
    outcome: ClaimOutcome | None = None
    # W3C traceparent of the prepare's span: the unprepare, a separate kubelet call, continues
    # that trace, so one claim's life is one trace. Empty when tracing is off.
    trace_context: str = ""
    undo: tuple[PlanV1, ...] = ()  # version 1's plans: read and translated, never written

    def __post_init__(self) -> None:
        if self.version > CHECKPOINT_VERSION:
            raise ValueError(
                f"checkpoint version {self.version} is newer than this driver's "
                f"{CHECKPOINT_VERSION}; it was written by a newer release"
            )
        if self.version < CHECKPOINT_VERSION:
            # Frozen, but still being built: the one place the record is upgraded.
            upgraded = self.plans + tuple(plan_from_v1(p) for p in self.undo)
            msgspec.structs.force_setattr(self, "plans", upgraded)
            msgspec.structs.force_setattr(self, "undo", ())
            msgspec.structs.force_setattr(self, "version", CHECKPOINT_VERSION)
