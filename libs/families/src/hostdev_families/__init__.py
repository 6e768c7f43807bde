"""Device families behind one Protocol: discover, prepare, unprepare, health."""

from hostdev_families.base import Family, FamilyError, HostRefused, dns_label
from hostdev_families.config import ConfigError, DevicesConfig, HostPathSpec, load_config
from hostdev_families.registry import build_families, discover_all

__all__ = [
    "ConfigError",
    "DevicesConfig",
    "Family",
    "FamilyError",
    "HostPathSpec",
    "HostRefused",
    "build_families",
    "discover_all",
    "dns_label",
    "load_config",
]
