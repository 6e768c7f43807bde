"""Transition shim: the selection file moved to `hostdev_devconfig`; import it from there.

Kept only so branches written before the move still import; remove once none do.
"""

from hostdev_devconfig import (
    ConfigError,
    DevicesConfig,
    HostPathSpec,
    MdevSelector,
    PciSelector,
    ResourceSpec,
    SriovSelector,
    UsbSelector,
    load_config,
)

__all__ = [
    "ConfigError",
    "DevicesConfig",
    "HostPathSpec",
    "MdevSelector",
    "PciSelector",
    "ResourceSpec",
    "SriovSelector",
    "UsbSelector",
    "load_config",
]
