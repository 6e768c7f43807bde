"""The claim state machine's decisions and transitions: tables over step, boot and outcome."""

from __future__ import annotations

import pytest

from hostdev_events.base import ErrorCode
from hostdev_events.claims import ClaimOutcome, ClaimRef, PreparedDevice
from hostdev_events.state import Checkpoint, ClaimStep
from hostdev_preparer import machine
from hostdev_preparer.errors import ClaimRejected

BOOT = "boot-now"
EARLIER = "boot-before"
OUTCOME = ClaimOutcome(
    devices=(PreparedDevice(request_names=("r",), pool="n1", device="kvm", cdi_device_ids=()),)
)


def _record(
    step: ClaimStep, boot: str = BOOT, outcome: ClaimOutcome | None = OUTCOME
) -> Checkpoint:
    return Checkpoint(
        claim=ClaimRef(namespace="ns", name="c", uid="u1"), step=step, boot_id=boot, outcome=outcome
    )


@pytest.mark.parametrize(
    ("step", "boot", "outcome", "expected"),
    [
        (None, BOOT, None, machine.Plan),
        (ClaimStep.PREPARING, BOOT, None, machine.Resume),
        (ClaimStep.PREPARING, EARLIER, None, machine.Resume),
        (ClaimStep.COMPLETED, BOOT, OUTCOME, machine.Answer),
        (ClaimStep.COMPLETED, "", OUTCOME, machine.Answer),  # recorded before boot IDs
        (ClaimStep.COMPLETED, EARLIER, OUTCOME, machine.Resume),
        (ClaimStep.COMPLETED, BOOT, None, machine.Resume),  # completed without an answer
        (ClaimStep.UNPREPARING, BOOT, None, machine.FinishUndo),
        (ClaimStep.UNPREPARING, EARLIER, OUTCOME, machine.FinishUndo),
    ],
)
def test_prepare_decision_by_step_boot_and_outcome(
    step: ClaimStep | None, boot: str, outcome: ClaimOutcome | None, expected: type
) -> None:
    """Only a record completed in this boot is answered as it is; a cut-short prepare and one
    from an earlier boot are carried out from the record; a cut-short undo is finished."""
    found = None if step is None else _record(step, boot, outcome)
    decision = machine.on_prepare(found, BOOT)
    assert type(decision) is expected
    if isinstance(decision, machine.Answer):
        assert decision.outcome == OUTCOME
    if isinstance(decision, machine.Resume | machine.FinishUndo):
        assert decision.checkpoint == found


def test_completed_record_not_trusted_is_carried_out_again_not_answered() -> None:
    """A record written while its spec and hold were (no host action), and not seen through
    by this process, is a plan to carry out again, whatever the boot."""
    found = _record(ClaimStep.COMPLETED, BOOT, OUTCOME)
    assert machine.on_prepare(found, BOOT, trusted=False) == machine.Resume(found)
    assert machine.on_prepare(found, BOOT, trusted=True) == machine.Answer(OUTCOME)


def test_node_without_a_boot_id_answers_every_completed_record() -> None:
    """An unknown boot of the node counts as the one the record was made in."""
    assert isinstance(machine.on_prepare(_record(ClaimStep.COMPLETED, EARLIER), ""), machine.Answer)


@pytest.mark.parametrize("step", [None, *ClaimStep])
def test_unprepare_undoes_whatever_is_recorded(step: ClaimStep | None) -> None:
    """Any record is undone, whatever its step; no record means a sweep by owner (which finds
    nothing unless a prepare with no host action was cut short before its record)."""
    found = None if step is None else _record(step)
    decision = machine.on_unprepare(found)
    if found is None:
        assert decision == machine.Sweep()
    else:
        assert decision == machine.Undo(found)


@pytest.mark.parametrize("step", [None, *ClaimStep])
def test_a_record_without_host_action_is_forgotten_only_once_completed(
    step: ClaimStep | None,
) -> None:
    """With nothing on the host to restore, a completed record is deleted first (one write);
    a record still preparing or already unpreparing takes the full undo."""
    found = None if step is None else _record(step)
    decision = machine.on_unprepare(found, host_action=False)
    if found is None:
        assert decision == machine.Sweep()
    elif step == ClaimStep.COMPLETED:
        assert decision == machine.Forget(found)
    else:
        assert decision == machine.Undo(found)


def test_conflicting_preparer_is_answered_once_it_completed_else_refused_as_stale() -> None:
    """A record another preparer completed in this boot is its answer; one still preparing,
    or from an earlier boot, refuses the call with a code the kubelet's retry resolves."""
    assert machine.on_conflict(_record(ClaimStep.COMPLETED), BOOT).outcome == OUTCOME
    for found in (None, _record(ClaimStep.PREPARING), _record(ClaimStep.COMPLETED, EARLIER)):
        with pytest.raises(ClaimRejected, match="another preparer") as refused:
            machine.on_conflict(found, BOOT)
        assert refused.value.code == ErrorCode.STALE


E = machine.Event
S = ClaimStep


@pytest.mark.parametrize(
    ("step", "event", "after"),
    [
        (None, E.PLANNED, S.PREPARING),
        (S.PREPARING, E.COMPLETED, S.COMPLETED),
        (S.COMPLETED, E.COMPLETED, S.COMPLETED),
        (S.PREPARING, E.UNDOING, S.UNPREPARING),
        (S.COMPLETED, E.UNDOING, S.UNPREPARING),
        (S.UNPREPARING, E.UNDOING, S.UNPREPARING),
        (S.UNPREPARING, E.UNDONE, None),
        (None, E.COMPLETED_AT_ONCE, S.COMPLETED),  # no host action: one write to prepare
        (S.COMPLETED, E.FORGOTTEN, None),  # and one to unprepare
    ],
)
def test_step_transitions(
    step: ClaimStep | None, event: machine.Event, after: ClaimStep | None
) -> None:
    """Each allowed transition of the record."""
    assert machine.step_after(step, event) == after


@pytest.mark.parametrize(
    ("step", "event"),
    [
        (None, E.COMPLETED),  # completing without a recorded plan
        (None, E.UNDOING),
        (S.PREPARING, E.PLANNED),  # planning over a record
        (S.COMPLETED, E.UNDONE),  # deleting a record whose undo never started
        (S.UNPREPARING, E.COMPLETED),  # completing a claim being undone
        (S.PREPARING, E.COMPLETED_AT_ONCE),  # a recorded plan is completed, not redone at once
        (S.PREPARING, E.FORGOTTEN),  # a prepare cut short may have acted: undo it
        (S.UNPREPARING, E.FORGOTTEN),
    ],
)
def test_transitions_outside_the_table_are_bugs(
    step: ClaimStep | None, event: machine.Event
) -> None:
    """A transition the table does not list raises instead of writing a record."""
    with pytest.raises(ValueError, match="no transition"):
        machine.step_after(step, event)


def test_kept_step_refuses_the_transition_that_deletes_the_record() -> None:
    """Writing a record's next step never writes the deletion as a step."""
    assert machine.step_kept(None, E.PLANNED) == S.PREPARING
    with pytest.raises(ValueError, match="deletes the record"):
        machine.step_kept(S.UNPREPARING, E.UNDONE)
