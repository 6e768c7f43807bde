"""Errors the command reports as one line: bad input (exit 2) and failed operations (exit 1)."""

from __future__ import annotations

BAD_INPUT = 2
FAILED = 1


class InputError(Exception):
    """The operator's input is wrong: a file, a name, a root. The message names it and why."""


class OperationFailed(Exception):
    """Something the command asked of the node did not work (unreachable socket, refusal)."""
