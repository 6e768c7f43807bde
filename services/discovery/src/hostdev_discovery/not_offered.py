"""Candidates the families leave out: kept for `inventory.get`, each logged once."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from hostdev_events.inventory import NotOffered
from hostdev_families import NOT_SELECTED

logger = logging.getLogger(__name__)


class NotOfferedLog:
    """The last scan's not-offered candidates; a WARNING only when one newly appears or
    its reason changes, never every scan. Unselected candidates are listed, not logged:
    the operator chose to leave them out."""

    def __init__(self) -> None:
        self.current: tuple[NotOffered, ...] = ()

    def update(self, found: Sequence[NotOffered]) -> None:
        """Record one scan's list and log what is new since the previous one."""
        before = set(self.current)
        for item in found:
            if item.code != NOT_SELECTED and item not in before:
                logger.warning(
                    "device not offered: %s",
                    item.reason,
                    extra={"family": item.family, "candidate": item.candidate, "code": item.code},
                )
        self.current = tuple(found)
