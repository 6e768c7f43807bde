"""Errors of hostdev_cdi.

CdiError
└── InvalidSpec    a spec, name or owner breaks a CDI rule (message says which)

`code` is the value of the ErrorCode (hostdev_events) a service answers for it, read by
hostdev_runtime.errors.classify; a plain string, as this library depends on nothing.
"""

from __future__ import annotations

from typing import ClassVar


class CdiError(Exception):
    """Base of hostdev_cdi errors."""

    code: ClassVar[str] = "invalid"


class InvalidSpec(CdiError):
    """The spec would be rejected by a CDI reader, or is unsafe to write."""
