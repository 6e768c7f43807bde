"""Errors of hostdev_cdi.

CdiError
└── InvalidSpec    a spec, name or owner breaks a CDI rule (message says which)
"""

from __future__ import annotations


class CdiError(Exception):
    """Base of hostdev_cdi errors."""


class InvalidSpec(CdiError):
    """The spec would be rejected by a CDI reader, or is unsafe to write."""
