"""Errors of the Kubernetes adapter.

KubeError(status, reason, message)   code unavailable
├── NotFound       404                code not-found
├── Conflict       409 (stale resourceVersion, or the name is taken)   code stale
└── Gone           410 (watch resourceVersion too old; list again)     code stale

`code` is the class's ErrorCode, read by hostdev_runtime.errors.classify.
"""

from __future__ import annotations

from typing import ClassVar

from hostdev_events.base import ErrorCode


class KubeError(Exception):
    """The API server refused a request; `status` is the HTTP status (0 when unreachable)."""

    code: ClassVar[ErrorCode] = ErrorCode.UNAVAILABLE

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(KubeError):
    """The object does not exist."""

    code: ClassVar[ErrorCode] = ErrorCode.NOT_FOUND


class Conflict(KubeError):
    """The object changed since it was read, or already exists."""

    code: ClassVar[ErrorCode] = ErrorCode.STALE


class Gone(KubeError):
    """The requested resourceVersion is no longer available."""

    code: ClassVar[ErrorCode] = ErrorCode.STALE
