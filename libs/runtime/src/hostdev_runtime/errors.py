"""Errors a handler raises to answer a typed ErrorReply.

HandlerError(code, detail)    answered as ErrorReply(code, detail)
SettingsError                 a service's settings are missing or wrong; the process exits
"""

from __future__ import annotations

from hostdev_events.base import ErrorCode


class HandlerError(Exception):
    """A handler's failure with the code the requester sees."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class SettingsError(Exception):
    """Settings could not be loaded; the message names the variable."""
