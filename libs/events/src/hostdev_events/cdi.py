"""Commands between the preparer and the CDI writer."""

from __future__ import annotations

import msgspec

from hostdev_events.base import Message


class RequestMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """The KEP-5304 device metadata of one request, and where the container reads it."""

    request: str  # a DNS label: it names a directory
    container_path: str  # /var/run/kubernetes.io/dra-device-attributes/.../<driver>-metadata.json
    document: msgspec.Raw  # the JSON stream of DeviceMetadata objects, newest version first


class WriteCdiSpecs(Message, frozen=True, tag="cdi.write.v1"):
    """Write these CDI specs for `owner` (a claim UID), replacing what it had.

    Each spec is the JSON document itself, so the writer validates exactly the
    bytes it will put on disk. Metadata files are written next to the specs and
    bind-mounted by a `<driver>/metadata` spec the writer makes.
    """

    owner: str
    specs: tuple[msgspec.Raw, ...]
    metadata: tuple[RequestMetadata, ...] = ()


class CdiSpecsWritten(Message, frozen=True, tag="cdi.written.v1"):
    """The files now on disk for the owner."""

    owner: str
    paths: tuple[str, ...]


class RemoveCdiSpecs(Message, frozen=True, tag="cdi.remove.v1"):
    """Remove every CDI spec file of `owner`; removing nothing is success."""

    owner: str


class CdiSpecsRemoved(Message, frozen=True, tag="cdi.removed.v1"):
    """The files that were removed."""

    owner: str
    paths: tuple[str, ...]
