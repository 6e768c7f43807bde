"""Allocator settings."""

from __future__ import annotations

from hostdev_runtime.settings import CommonSettings


class Settings(CommonSettings, frozen=True, kw_only=True):
    """Everything the allocator reads from the environment: only the common settings."""
