"""The base Struct of every bus message and the typed error reply."""

from __future__ import annotations

import enum

import msgspec


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every message on the bus; the tag names the schema and its version."""


class ErrorCode(enum.StrEnum):
    """Why a request failed; stable strings that callers branch on."""

    MALFORMED = "malformed"  # the request could not be decoded as the subject's type
    INVALID = "invalid"  # decoded, but its content breaks a rule
    NOT_FOUND = "not-found"
    CONFLICT = "conflict"  # a device is held by someone else
    STALE = "stale"  # a compare-and-set lost; retrying may succeed
    HOST_REFUSED = "host-refused"  # the kernel refused a sysfs write
    UNAVAILABLE = "unavailable"  # a service this one depends on did not answer
    TIMEOUT = "timeout"
    INTERNAL = "internal"


class ErrorReply(Message, frozen=True, tag="error.v1"):
    """What any handler answers instead of its normal reply when it fails."""

    code: ErrorCode
    detail: str
