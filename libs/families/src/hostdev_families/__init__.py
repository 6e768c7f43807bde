"""Device families behind one Protocol: survey/discover, plan, apply, unprepare, healthy."""

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
from hostdev_families.base import (
    DISCOVERED,
    NOT_SELECTED,
    Family,
    Health,
    Survey,
    dns_label,
)
from hostdev_families.errors import FamilyError, HostRefused
from hostdev_families.netlink import Pyroute2Netlink, VfNetlink, VfSettings
from hostdev_families.registry import build_families, check_health, discover_all, survey_all

__all__ = [
    "DISCOVERED",
    "NOT_SELECTED",
    "ConfigError",
    "DevicesConfig",
    "Family",
    "FamilyError",
    "Health",
    "HostPathSpec",
    "HostRefused",
    "MdevSelector",
    "PciSelector",
    "Pyroute2Netlink",
    "ResourceSpec",
    "SriovSelector",
    "Survey",
    "UsbSelector",
    "VfNetlink",
    "VfSettings",
    "build_families",
    "check_health",
    "discover_all",
    "dns_label",
    "load_config",
    "survey_all",
]
