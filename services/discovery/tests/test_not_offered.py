"""Not-offered candidates are logged once when they appear, never every scan."""

from __future__ import annotations

import logging

import pytest

from hostdev_discovery.not_offered import NotOfferedLog
from hostdev_events.inventory import NotOffered

SHARED = NotOffered(
    family="pci", candidate="0000:01:00.0", reason="its group is shared", code="iommu-group-shared"
)
UNSELECTED = NotOffered(
    family="pci", candidate="0000:00:14.0", reason="no selector", code="not-selected"
)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_candidate_is_warned_about_once_and_again_only_after_it_came_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three scans with the same reason give one WARNING; after a scan without it, a new
    appearance is warned about again. Unselected candidates are listed but never logged."""
    log = NotOfferedLog()
    caplog.set_level(logging.WARNING, logger="hostdev_discovery.not_offered")
    for _ in range(3):
        log.update([SHARED, UNSELECTED])
    assert _warnings(caplog) == ["device not offered: its group is shared"]
    assert log.current == (SHARED, UNSELECTED)
    log.update([UNSELECTED])
    log.update([SHARED, UNSELECTED])
    assert len(_warnings(caplog)) == 2
