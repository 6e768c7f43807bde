"""Errors of the Kubernetes adapter.

KubeError(status, reason, message)
├── NotFound       404
├── Conflict       409 (stale resourceVersion, or the name is taken)
└── Gone           410 (watch resourceVersion too old; list again)
"""

from __future__ import annotations


class KubeError(Exception):
    """The API server refused a request; `status` is the HTTP status (0 when unreachable)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(KubeError):
    """The object does not exist."""


class Conflict(KubeError):
    """The object changed since it was read, or already exists."""


class Gone(KubeError):
    """The requested resourceVersion is no longer available."""
