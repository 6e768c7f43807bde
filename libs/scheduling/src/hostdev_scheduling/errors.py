"""Typed errors for input the simulator cannot take: each names the object and the problem."""

from __future__ import annotations


class SchedulingError(Exception):
    """Bad input: a malformed object, a dangling reference, an unknown class, a CEL error."""


class CelCompileError(SchedulingError):
    """A CEL selector does not parse or does not type-check in the DRA environment."""

    def __init__(self, owner: str, expression: str, detail: str) -> None:
        super().__init__(f"{owner}: CEL expression {expression!r} does not compile: {detail}")
        self.owner = owner
        self.expression = expression
        self.detail = detail


class UnknownDeviceClassError(SchedulingError):
    """A request names a DeviceClass that is not in the input."""
