"""The device selection file: its structs and `load_config`; data only, no host access."""

from hostdev_devconfig.config import (
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
