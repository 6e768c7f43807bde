"""The preparer's own failure, and the one place a failed claim is turned into text and logged.

Codes come from hostdev_runtime.errors.classify, the classifier the runner uses too.
"""

from __future__ import annotations

import logging

from hostdev_events.base import ErrorCode
from hostdev_runtime import telemetry
from hostdev_runtime.errors import classify, describe

logger = logging.getLogger(__name__)


class ClaimRejected(Exception):
    """This claim cannot be prepared here; the message goes to the kubelet as the claim's error.

    `code` says why: invalid (the claim asks for what this node cannot do), not-found (the
    claim or a device is gone), stale (another preparer holds its record), timeout (the
    kubelet's deadline passed).
    """

    def __init__(self, message: str, code: ErrorCode = ErrorCode.INVALID) -> None:
        super().__init__(message)
        self.code = code


def failed(operation: str, owner: str, err: BaseException) -> tuple[ErrorCode, str]:
    """Classify and log one failed claim (or device-plugin allocation): a WARNING with its
    UID and error code for every expected failure, an ERROR with the stack for a bug.

    Returns the code (the metric label) and the text the kubelet sees.
    """
    code = classify(err)
    extra = {telemetry.ATTR_CLAIM_UID: owner, "operation": operation, "code": str(code)}
    if code == ErrorCode.INTERNAL:
        logger.error("claim failed", exc_info=err, extra=extra)
        return code, f"internal error: {describe(err)}"
    logger.warning("claim failed", extra={**extra, "error": describe(err)})
    return code, describe(err)
