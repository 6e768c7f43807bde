"""CDI writer settings."""

from __future__ import annotations

from typing import Literal

from hostdev_runtime.settings import CommonSettings


class Settings(CommonSettings, frozen=True, kw_only=True):
    """Everything the CDI writer reads from the environment (see CommonSettings for the rest).

    cdi_root: the dynamic CDI spec directory the container runtime reads (HOSTDEV_CDI_ROOT).
    cdi_write_on_loop: where a claim's spec files are written (HOSTDEV_CDI_WRITE_ON_LOOP):
                 `auto` (the default) writes them on the event loop when cdi_root is on tmpfs
                 or ramfs, where a write and its fsyncs take tens of microseconds, and on a
                 worker thread otherwise, where an fsync may wait milliseconds for a disk;
                 `always` and `never` force one or the other.
    """

    cdi_root: str = "/var/run/cdi"
    cdi_write_on_loop: Literal["auto", "always", "never"] = "auto"
