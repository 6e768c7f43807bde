"""CDI naming rules: kinds, device names, qualified IDs and spec file names."""

from __future__ import annotations

import re

from hostdev_cdi.errors import InvalidSpec

# Vendor and class: letter first, letter or digit last, inner A-Z a-z 0-9 _ - .
_VENDOR_OR_CLASS = re.compile(r"^[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?$")
# Device name: letter or digit first and last, inner A-Z a-z 0-9 _ - . :
_DEVICE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?$")
# Owners become part of file names: no separators, no dot-only names.
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

DEVICE_CLASS = "device"
METADATA_CLASS = "metadata"


def vendor_for(driver: str) -> str:
    """The CDI vendor of a DRA driver (the common `k8s.<driver>` convention)."""
    return f"k8s.{driver}"


def kind(vendor: str, device_class: str) -> str:
    """`<vendor>/<class>`, checked."""
    if not _VENDOR_OR_CLASS.match(vendor):
        raise InvalidSpec(f"invalid CDI vendor {vendor!r}")
    if not _VENDOR_OR_CLASS.match(device_class):
        raise InvalidSpec(f"invalid CDI class {device_class!r}")
    return f"{vendor}/{device_class}"


def split_kind(spec_kind: str) -> tuple[str, str]:
    """(vendor, class) of a kind, checked."""
    vendor, sep, device_class = spec_kind.partition("/")
    if not sep:
        raise InvalidSpec(f"CDI kind {spec_kind!r} has no '/'")
    kind(vendor, device_class)
    return vendor, device_class


def check_device_name(name: str) -> str:
    """A device name as CDI allows it."""
    if not _DEVICE_NAME.match(name):
        raise InvalidSpec(f"invalid CDI device name {name!r}")
    return name


def qualified(spec_kind: str, name: str) -> str:
    """The fully qualified device ID `vendor/class=name` the runtime resolves."""
    split_kind(spec_kind)
    return f"{spec_kind}={check_device_name(name)}"


def claim_device_name(claim_uid: str, device: str) -> str:
    """Unique per claim, so a runtime's cached spec never resolves to stale content."""
    return check_device_name(f"{claim_uid}-{device}")


def check_owner(owner: str) -> str:
    """An owner (claim UID) safe to embed in a file name: no '/', no '..' tricks."""
    if not _OWNER.match(owner) or ".." in owner:
        raise InvalidSpec(f"invalid spec owner {owner!r}")
    return owner


def spec_file_name(spec_kind: str, owner: str) -> str:
    """`<vendor>-<class>_<owner>.json`, the transient spec naming convention."""
    vendor, device_class = split_kind(spec_kind)
    return f"{vendor}-{device_class}_{check_owner(owner)}.json"


def owner_suffix(owner: str) -> str:
    """The file name ending shared by every spec of `owner`."""
    return f"_{check_owner(owner)}.json"
