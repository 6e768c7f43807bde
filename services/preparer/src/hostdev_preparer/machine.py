"""The claim state machine: what to do next for a claim, decided from its record alone.

Pure functions, no I/O. The handlers read the record, ask `on_prepare`/`on_unprepare` what
to do, `match` over the answer and do it; the actions (reserve, apply, write, undo) live in
flow.py and record each step through `step_after`. The machine's table, state by event:

| record (step, boot)         | prepare            | unprepare                        |
|-----------------------------|--------------------|----------------------------------|
| none                        | Plan               | Sweep                            |
| preparing                   | Resume             | Undo                             |
| completed, this boot        | Answer (recorded)  | Undo; Forget if no host action   |
| completed, not trusted      | Resume (redo)      | Undo; Forget if no host action   |
| completed, an earlier boot  | Resume (redo)      | Undo; Forget if no host action   |
| unpreparing                 | FinishUndo, Plan   | Undo                             |

Step transitions (`step_after`): none -planned-> preparing -completed-> completed;
preparing | completed -undoing-> unpreparing -undone-> none (record deleted). A completed
claim is completed again after a reboot. A claim with no host action (nothing on the host
to restore: host paths, USB nodes) is written once each way: none -completed at once->
completed (reserved and its specs written first), and completed -forgotten-> none (its spec
and hold go with it). As that one record is written while its spec and hold are, it is
trusted only by the process that saw all three land; to any other ("not trusted" above)
it is a plan to carry out again. Anything else is a bug and raises.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hostdev_events.base import ErrorCode
from hostdev_events.claims import ClaimOutcome
from hostdev_events.state import Checkpoint, ClaimStep
from hostdev_preparer.errors import ClaimRejected


@dataclass(frozen=True, slots=True)
class Plan:
    """Nothing is recorded: read the claim, plan its devices, record the plan, complete it."""


@dataclass(frozen=True, slots=True)
class Answer:
    """Completed in this boot: answer what was recorded, touching nothing."""

    outcome: ClaimOutcome


@dataclass(frozen=True, slots=True)
class Resume:
    """A recorded plan to carry out: a prepare cut short, or one from an earlier boot whose
    work (tmpfs specs, vfio bindings, mdevs) the reboot took away. Every action is
    idempotent, so completing it again from the record is safe."""

    checkpoint: Checkpoint


@dataclass(frozen=True, slots=True)
class FinishUndo:
    """An unprepare was cut short: finish it, then plan afresh from the API."""

    checkpoint: Checkpoint


@dataclass(frozen=True, slots=True)
class Sweep:
    """Unprepare of a claim with no record: done already, never prepared here, or a prepare
    with no host action whose one write failed or was cut short. Its specs are removed and its holds
    released by owner, which is nothing at all in the first two cases."""


@dataclass(frozen=True, slots=True)
class Undo:
    """Undo what the record says was or may have been done, then delete the record."""

    checkpoint: Checkpoint


@dataclass(frozen=True, slots=True)
class Forget:
    """A completed claim with no host action: delete the record first (its one write), then
    remove its spec and release its hold at once. A crash between leaves them with no
    record, which the kubelet's retry sweeps (see Sweep)."""

    checkpoint: Checkpoint


PrepareAction = Plan | Answer | Resume | FinishUndo
UnprepareAction = Sweep | Undo | Forget


def completed_in_boot(checkpoint: Checkpoint, boot_id: str) -> bool:
    """A completed record whose work is still in place: recorded in this boot of the node
    (an unknown boot on either side counts as this one)."""
    if checkpoint.step != ClaimStep.COMPLETED or checkpoint.outcome is None:
        return False
    return not (boot_id and checkpoint.boot_id and boot_id != checkpoint.boot_id)


def on_prepare(found: Checkpoint | None, boot_id: str, *, trusted: bool = True) -> PrepareAction:
    """What NodePrepareResources does for a claim, given its record and the node's boot.

    `trusted`: whether a completed record's work is known to be in place (flow.trusted).
    """
    if found is None:
        return Plan()
    if completed_in_boot(found, boot_id) and trusted:
        assert found.outcome is not None  # completed_in_boot checked it
        return Answer(found.outcome)
    if found.step == ClaimStep.UNPREPARING:
        return FinishUndo(found)
    return Resume(found)


def on_conflict(found: Checkpoint | None, boot_id: str) -> Answer:
    """Another preparer recorded the claim between our read and our write (a rolling update
    runs two): its answer if it has completed, else a refusal; the kubelet retries, and by
    then the record is complete. Joining in would race its final write."""
    if found is not None and completed_in_boot(found, boot_id):
        assert found.outcome is not None
        return Answer(found.outcome)
    raise ClaimRejected("another preparer is preparing this claim; retry", ErrorCode.STALE)


def on_unprepare(found: Checkpoint | None, *, host_action: bool = True) -> UnprepareAction:
    """What NodeUnprepareResources does for a claim: undo whatever its record holds.

    `host_action`: whether any of the record's plans acted on the host (flow.acts_on_host).
    """
    if found is None:
        return Sweep()
    if found.step == ClaimStep.COMPLETED and not host_action:
        return Forget(found)
    return Undo(found)


class Event(enum.StrEnum):
    """What happened to a claim's record, in the order a prepare and unprepare go."""

    PLANNED = "planned"  # devices chosen, host actions planned; nothing touched yet
    COMPLETED = "completed"  # reserved, applied, specs written, outcome known
    UNDOING = "undoing"  # an undo starts (unprepare, or rollback of a failed prepare)
    UNDONE = "undone"  # everything undone; the record goes
    # A claim with no host action, whose record is written once each way:
    COMPLETED_AT_ONCE = "completed at once"  # reserved and specs written, nothing recorded yet
    FORGOTTEN = "forgotten"  # completed; the record goes first, then its spec and hold


_TRANSITIONS: dict[tuple[ClaimStep | None, Event], ClaimStep | None] = {
    (None, Event.PLANNED): ClaimStep.PREPARING,
    (None, Event.COMPLETED_AT_ONCE): ClaimStep.COMPLETED,
    (ClaimStep.PREPARING, Event.COMPLETED): ClaimStep.COMPLETED,
    (ClaimStep.COMPLETED, Event.COMPLETED): ClaimStep.COMPLETED,  # redone after a reboot
    (ClaimStep.PREPARING, Event.UNDOING): ClaimStep.UNPREPARING,
    (ClaimStep.COMPLETED, Event.UNDOING): ClaimStep.UNPREPARING,
    (ClaimStep.UNPREPARING, Event.UNDOING): ClaimStep.UNPREPARING,
    (ClaimStep.UNPREPARING, Event.UNDONE): None,
    (ClaimStep.COMPLETED, Event.FORGOTTEN): None,
}


def step_after(step: ClaimStep | None, event: Event) -> ClaimStep | None:
    """The step a record moves to (None: no record); a transition not in the table is a bug."""
    try:
        return _TRANSITIONS[(step, event)]
    except KeyError:
        raise ValueError(f"no transition from {step or 'no record'} on {event}") from None


def step_kept(step: ClaimStep | None, event: Event) -> ClaimStep:
    """`step_after` for a transition that keeps a record (every one but `undone`)."""
    after = step_after(step, event)
    if after is None:
        raise ValueError(f"{event} from {step} deletes the record")
    return after
