"""CDI spec Structs, device naming, minimum version and validation, atomic files."""

from hostdev_cdi import filesystem, metadata, names
from hostdev_cdi.errors import CdiError, InvalidSpec
from hostdev_cdi.files import decode_spec, encode_spec, owned_files, remove_owned, write_atomic
from hostdev_cdi.spec import ContainerEdits, Device, DeviceNode, Mount, NetDevice, Spec
from hostdev_cdi.validate import validate
from hostdev_cdi.version import minimum_version

__all__ = [
    "CdiError",
    "ContainerEdits",
    "Device",
    "DeviceNode",
    "InvalidSpec",
    "Mount",
    "NetDevice",
    "Spec",
    "decode_spec",
    "encode_spec",
    "filesystem",
    "metadata",
    "minimum_version",
    "names",
    "owned_files",
    "remove_owned",
    "validate",
    "write_atomic",
]
