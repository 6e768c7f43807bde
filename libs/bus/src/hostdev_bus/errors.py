"""Errors raised by hostdev_bus.

BusError
├── RemoteError          the other side answered an ErrorReply (code, detail)
├── RequestTimeout       no answer before the deadline
├── Unavailable          nobody subscribes to the subject (or NATS is down)
├── MalformedReply       the answer could not be decoded as the expected type
├── PayloadTooLarge      the message is larger than the server's max_payload; never sent
└── KvError
    ├── KeyExists        create() on a key that has a value
    ├── WrongRevision    update()/delete() with a revision that is no longer the latest
    └── KeyMissing       update() of a key that has no value
"""

from __future__ import annotations

from hostdev_events.base import ErrorCode


class BusError(Exception):
    """Base of every hostdev_bus error."""


class RemoteError(BusError):
    """The responder answered with a typed error."""

    def __init__(self, code: ErrorCode, detail: str, subject: str = "") -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.subject = subject


class RequestTimeout(BusError):
    """No reply arrived before the deadline."""

    def __init__(self, subject: str, timeout: float) -> None:
        super().__init__(f"no reply on {subject} within {timeout:.3f}s")
        self.subject = subject
        self.timeout = timeout


class Unavailable(BusError):
    """No responder for the subject, or no connection to NATS."""

    def __init__(self, subject: str, reason: str) -> None:
        super().__init__(f"{subject}: {reason}")
        self.subject = subject
        self.reason = reason


class MalformedReply(BusError):
    """The reply did not decode as the expected type."""

    def __init__(self, subject: str, reason: str) -> None:
        super().__init__(f"malformed reply on {subject}: {reason}")
        self.subject = subject
        self.reason = reason


class PayloadTooLarge(BusError):
    """The encoded message exceeds what the NATS server accepts in one message."""

    # Sending it again cannot help: what made it large came with the request.
    code = ErrorCode.INVALID

    def __init__(self, subject: str, size: int) -> None:
        super().__init__(f"{subject}: a message of {size} bytes exceeds the NATS max_payload")
        self.subject = subject
        self.size = size


class KvError(BusError):
    """Base of key-value store errors; `key` names the entry."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class KeyExists(KvError):
    """create() found a value already."""


class WrongRevision(KvError):
    """Compare-and-set lost: someone wrote the key since it was read."""


class KeyMissing(KvError):
    """The key has no value."""
