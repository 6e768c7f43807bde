"""The preparer service as its own process, with the fake kernel and fake netlink behind it.

Only the kernel's reaction to sysfs writes and netlink are faked; everything else is
the real service. The demo and process-level tests start this instead of
`python -m hostdev_preparer` because a fake tree has no kernel behind it.
"""

from __future__ import annotations

from pathlib import Path

from hostdev_preparer.app import SERVICE, app
from hostdev_preparer.settings import Settings
from hostdev_runtime.clock import Clock
from hostdev_runtime.main import main
from hostdev_runtime.runner import App
from hostdev_testing.fakenetlink import FakeNetlink
from hostdev_testing.fakesysfs import FakeKernel


def faked(settings: Settings, clock: Clock | None = None) -> App:
    """The preparer app with the fakes rooted at the settings' host root (and `clock`, if given)."""
    root = Path(settings.host_root)
    return app(settings, writer=FakeKernel(root), netlink=FakeNetlink(root), clock=clock)


if __name__ == "__main__":
    main(SERVICE, Settings, faked)
