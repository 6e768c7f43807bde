"""Errors of the device families, each with the ErrorCode a service answers for it.

FamilyError(device, message)   invalid: the device or its config cannot be used as asked
└── HostRefused                host-refused: the kernel refused a write; nothing half-done

`code` is read by hostdev_runtime.errors.classify. Selection-file errors are ConfigError
(hostdev_devconfig): they stop a service at start, never a claim.
"""

from __future__ import annotations

from typing import ClassVar

from hostdev_events.base import ErrorCode


class FamilyError(Exception):
    """A family could not do what was asked; `device` names the device."""

    code: ClassVar[ErrorCode] = ErrorCode.INVALID

    def __init__(self, device: str, message: str) -> None:
        super().__init__(f"{device}: {message}")
        self.device = device


class HostRefused(FamilyError):
    """The kernel refused a write (busy device, unknown type); nothing is left half-done."""

    code: ClassVar[ErrorCode] = ErrorCode.HOST_REFUSED
