"""The one error taxonomy: every failure a service answers or records gets one ErrorCode.

HandlerError(code, detail)    a handler's own failure, answered as ErrorReply(code, detail)
SettingsError                 a service's settings are missing or wrong; the process exits

`classify` is the only place a failure gets its code; the runner (for every ErrorReply)
and the preparer (for every failed claim and its metric label) both use it. Libraries say
their own code: an exception class with a class attribute `code` (an ErrorCode, or its
string value for libraries that do not depend on hostdev_events) is classified by it, so
this module never imports them. Anything else is INTERNAL: a bug, logged with its stack.
"""

from __future__ import annotations

from hostdev_bus import KeyExists, RemoteError, RequestTimeout, Unavailable, WrongRevision
from hostdev_bus.errors import BusError
from hostdev_events import subjects
from hostdev_events.base import ErrorCode


class HandlerError(Exception):
    """A handler's failure with the code the requester sees."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class SettingsError(Exception):
    """Settings could not be loaded; the message names the variable."""


_CODES = frozenset(ErrorCode)


def classify(err: BaseException) -> ErrorCode:
    """The code of a failure; INTERNAL for anything no layer expected."""
    if isinstance(err, RequestTimeout):
        return ErrorCode.TIMEOUT
    if isinstance(err, KeyExists | WrongRevision):
        return ErrorCode.STALE  # a compare-and-set lost: the next call decides from the record
    if isinstance(err, Unavailable):
        return ErrorCode.UNAVAILABLE
    if isinstance(err, subjects.InvalidName):
        return ErrorCode.INVALID  # a name from the request that cannot be a subject or KV key
    code = getattr(err, "code", None)  # HandlerError, RemoteError and the libraries' errors
    if isinstance(code, str) and code in _CODES:
        return ErrorCode(code)
    if isinstance(err, BusError):
        return ErrorCode.UNAVAILABLE
    return ErrorCode.INTERNAL


def describe(err: BaseException) -> str:
    """The text a requester (or the kubelet) sees for a failure."""
    if isinstance(err, HandlerError | RemoteError):
        return err.detail
    if classify(err) == ErrorCode.INTERNAL:
        return f"{type(err).__name__}: {err}"
    return str(err)
