"""The time family code waits on, in the worker thread it runs in.

The services' clock seam (hostdev_runtime.clock) sleeps with asyncio and sits beside this
package, which may not import it (see the import contracts); family code blocks in a
thread, so its seam sleeps the thread. Tests pass a clock whose time they move.
"""

from __future__ import annotations

import time
from typing import Protocol


class ThreadClock(Protocol):
    """Monotonic time and a sleep that blocks the calling thread."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for `seconds`."""
        ...


class SystemThreadClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK: ThreadClock = SystemThreadClock()
