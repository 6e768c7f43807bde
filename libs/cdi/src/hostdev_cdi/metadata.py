"""KEP-5304 device metadata: the documents, their paths, and the spec that mounts them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec

from hostdev_cdi import names
from hostdev_cdi.errors import InvalidSpec
from hostdev_cdi.spec import ContainerEdits, Device, Mount, Spec
from hostdev_cdi.version import minimum_version

API_VERSION = "metadata.resource.k8s.io/v1alpha1"
KIND = "DeviceMetadata"
CONTAINER_BASE = "/var/run/kubernetes.io/dra-device-attributes"
HOST_DIR = "dra-device-metadata"  # under the CDI directory; runtimes do not read subfolders
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def container_path(driver: str, claim_name: str, pod_claim_name: str, request: str) -> str:
    """Where KubeVirt (and any workload) reads the file for one request of a claim."""
    if pod_claim_name:
        return f"{CONTAINER_BASE}/resourceclaimtemplates/{pod_claim_name}/{request}/{driver}-metadata.json"
    return f"{CONTAINER_BASE}/resourceclaims/{claim_name}/{request}/{driver}-metadata.json"


def document(
    *,
    claim: dict[str, Any],
    pod_claim_name: str,
    request: str,
    devices: Sequence[dict[str, Any]],
) -> bytes:
    """The metadata file: one JSON object per supported version, one per line."""
    body: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND, "metadata": claim}
    if pod_claim_name:
        body["podClaimName"] = pod_claim_name
    body["requests"] = [{"name": request, "devices": list(devices)}]
    return msgspec.json.encode(body) + b"\n"


def check_request(request: str) -> str:
    """Request names become directory names: DNS labels only."""
    if not _LABEL.match(request):
        raise InvalidSpec(f"request name {request!r} is not a DNS label")
    return request


def spec(driver: str, owner: str, mounts: Sequence[tuple[str, str, str]]) -> Spec:
    """The `<driver>/metadata` spec: one device `<owner>_<request>` per (request, host, container)."""
    devices = tuple(
        Device(
            name=names.check_device_name(f"{owner}_{request}"),
            container_edits=ContainerEdits(
                mounts=(Mount(host_path=host, container_path=inside, options=("ro", "bind")),)
            ),
        )
        for request, host, inside in mounts
    )
    draft = Spec(cdi_version="0.3.0", kind=metadata_kind(driver), devices=devices)
    return Spec(cdi_version=minimum_version(draft), kind=draft.kind, devices=devices)


def metadata_kind(driver: str) -> str:
    """`<driver>/metadata`, the kind the upstream helper uses."""
    return names.kind(driver, names.METADATA_CLASS)


def cdi_id(driver: str, owner: str, request: str) -> str:
    """The CDI ID that mounts one request's metadata file."""
    return names.qualified(metadata_kind(driver), f"{owner}_{request}")
