"""CDI writer settings."""

from __future__ import annotations

from hostdev_runtime.settings import CommonSettings


class Settings(CommonSettings, frozen=True, kw_only=True):
    """Everything the CDI writer reads from the environment (see CommonSettings for the rest).

    cdi_root: the dynamic CDI spec directory the container runtime reads (HOSTDEV_CDI_ROOT).
    """

    cdi_root: str = "/var/run/cdi"
