"""How a kubelet call fails as a whole (a claim's own failure is its outcome's error)."""

from __future__ import annotations


class DriverUnavailable(Exception):
    """The preparer could not be reached or failed as a whole; the call fails, not a claim."""


class TooManyClaims(Exception):
    """The call's claims do not fit in one NATS message; retrying the same call cannot help."""
