"""Waiting for udev's /dev/vfio/<group> node after a bind, on a clock the test moves."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hostdev_families import HostRefused, vfio
from hostdev_sysfs import HostRoot
from hostdev_testing.fakesysfs import SampleHost, acceptance_host

GROUP = 77  # a group without a node in the sample host (nothing bound to VFIO)


class StepClock:
    """A thread clock whose sleep moves its time at once; `at` runs something (udev
    catching up) once that much time has passed."""

    def __init__(self) -> None:
        self.start = self.now = 100.0
        self.due: list[tuple[float, Callable[[], None]]] = []

    def at(self, seconds: float, action: Callable[[], None]) -> None:
        self.due.append((self.now + seconds, action))

    def monotonic(self) -> float:
        return self.now

    @property
    def passed(self) -> float:
        return self.now - self.start

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        for when, action in [d for d in self.due if d[0] <= self.now]:
            self.due.remove((when, action))
            action()


@pytest.fixture
def sample(tmp_path: Path) -> SampleHost:
    return acceptance_host(tmp_path / "root")


def test_a_group_node_udev_creates_late_is_waited_for(sample: SampleHost) -> None:
    """The bind has returned, udev makes the node 0.3 s later: the wait returns then."""
    clock = StepClock()
    node = sample.root / f"dev/vfio/{GROUP}"
    clock.at(0.3, node.touch)
    vfio.wait_for_group_node(HostRoot(sample.root), "pci-x", GROUP, clock)
    assert node.exists()
    assert 0.3 <= clock.passed < 0.3 + 2 * vfio.NODE_POLL_SECONDS


def test_a_group_node_that_never_appears_is_refused_after_the_wait_in_clock_time(
    sample: SampleHost,
) -> None:
    """No node after NODE_WAIT_SECONDS of the clock's time: refused with the node's path,
    and the test itself never waits those seconds."""
    clock = StepClock()
    started = time.monotonic()
    with pytest.raises(HostRefused, match=f"/dev/vfio/{GROUP} did not appear after binding"):
        vfio.wait_for_group_node(HostRoot(sample.root), "pci-x", GROUP, clock)
    assert clock.passed >= vfio.NODE_WAIT_SECONDS
    assert time.monotonic() - started < vfio.NODE_WAIT_SECONDS / 2
