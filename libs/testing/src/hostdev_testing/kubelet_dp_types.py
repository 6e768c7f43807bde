"""Plain data of the device-plugin kubelet simulator: constants, records, errors, checks."""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import grpc

from hostdev_kubelet_pb.deviceplugin.v1beta1 import api_pb2 as dp_pb

# Wire constants of the device plugin API (section 4 of the protocol reference).
DP_VERSION: Final = "v1beta1"
HEALTHY: Final = "Healthy"
UNHEALTHY: Final = "Unhealthy"
KUBELET_SOCKET: Final = "kubelet.sock"
CHECKPOINT_FILE: Final = "kubelet_internal_checkpoint"
DEVICE_PLUGIN_SERVICE: Final = "v1beta1.DevicePlugin"

# Kubelet deadlines: the blocking dial of a plugin socket and PreStartContainer.
DIAL_TIMEOUT: Final = 10.0
PRE_START_TIMEOUT: Final = 30.0
# The kubelet sets no deadline on the other plugin calls; a test should not hang forever.
CALL_TIMEOUT: Final = 10.0

_DNS_LABEL: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN: Final = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_QUALIFIED_NAME: Final = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
# Domains reserved for resources Kubernetes itself defines.
_RESERVED_DOMAINS: Final = ("kubernetes.io", "k8s.io")
_REQUESTS_PREFIX: Final = "requests."


def extended_resource_name_problem(name: str) -> str | None:
    """Why name is not a valid extended resource name `<domain>/<name>`, or None if it is.

    Like the kubelet's check: a qualified name whose prefix is a DNS subdomain outside
    kubernetes.io, that does not start with "requests." and still fits in the quota form
    requests.<name>. Stricter in one point: the bare k8s.io domain is refused too (the
    kubelet accepts it); its subdomains stay valid, as hostdev.k8s.io/kvm is for the kubelet.
    """
    domain, sep, short = name.partition("/")
    if not sep or not domain or not short:
        return f"{name!r} is not of the form <domain>/<name>"
    if "/" in short:
        return f"{name!r} has more than one '/'"
    if len(domain) > 253 or not _DNS_SUBDOMAIN.fullmatch(domain):
        return f"domain {domain!r} is not a DNS subdomain"
    if domain in _RESERVED_DOMAINS or domain.endswith(".kubernetes.io"):
        return f"domain {domain!r} is reserved for Kubernetes resources"
    if name.startswith(_REQUESTS_PREFIX):
        return f"{name!r} starts with {_REQUESTS_PREFIX!r}"
    if len(_REQUESTS_PREFIX + domain) > 253:
        return f"domain {domain!r} is too long for the quota form requests.<domain>"
    if len(short) > 63 or not _QUALIFIED_NAME.fullmatch(short):
        return f"name part {short!r} is not a qualified name (alphanumerics, '-', '_', '.')"
    return None


def endpoint_problem(endpoint: str) -> str | None:
    """Why a RegisterRequest.endpoint is not a plain socket file name, or None if it is."""
    if not endpoint:
        return "endpoint is empty"
    if "/" in endpoint:
        return f"endpoint {endpoint!r} must be a file name in the device-plugins directory"
    if endpoint in (".", ".."):
        return f"endpoint {endpoint!r} is not a file name"
    return None


def remove_sockets(directory: Path, *, keep: str) -> list[Path]:
    """Delete every socket directly in directory except the one named keep; return them."""
    removed: list[Path] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name == keep:
                continue
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISSOCK(mode):
                Path(entry.path).unlink(missing_ok=True)
                removed.append(Path(entry.path))
    return sorted(removed)


@dataclass(frozen=True)
class DpOptions:
    """DevicePluginOptions as plain data."""

    pre_start_required: bool = False
    get_preferred_allocation_available: bool = False

    @classmethod
    def from_pb(cls, options: dp_pb.DevicePluginOptions) -> DpOptions:
        return cls(
            pre_start_required=options.pre_start_required,
            get_preferred_allocation_available=options.get_preferred_allocation_available,
        )


@dataclass(frozen=True)
class DpDevice:
    """One Device of a ListAndWatch message."""

    id: str
    # As sent; anything but "Healthy" counts as unhealthy.
    health: str
    numa_nodes: tuple[int, ...] = ()

    @property
    def healthy(self) -> bool:
        return self.health == HEALTHY

    @classmethod
    def from_pb(cls, device: dp_pb.Device) -> DpDevice:
        return cls(
            id=device.ID,
            health=device.health,
            numa_nodes=tuple(n.ID for n in device.topology.nodes),
        )


@dataclass(frozen=True)
class DpRegistration:
    """One accepted Register call."""

    resource_name: str
    # RegisterRequest.endpoint, a file name in the device-plugins directory.
    endpoint: str
    # From GetDevicePluginOptions: what the kubelet acts on.
    options: DpOptions
    # RegisterRequest.options, or None when the plugin left it unset.
    request_options: DpOptions | None
    sequence: int
    registered_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class DpRejection:
    """One Register call answered with a gRPC error."""

    resource_name: str
    version: str
    endpoint: str
    code: grpc.StatusCode
    reason: str


@dataclass(frozen=True)
class Mount:
    """One Mount of a ContainerAllocateResponse."""

    container_path: str
    host_path: str
    read_only: bool


@dataclass(frozen=True)
class DeviceSpec:
    """One DeviceSpec (device node) of a ContainerAllocateResponse."""

    container_path: str
    host_path: str
    permissions: str


@dataclass(frozen=True)
class AllocateResult:
    """The ContainerAllocateResponse the kubelet applies to the container."""

    envs: Mapping[str, str]
    mounts: tuple[Mount, ...]
    devices: tuple[DeviceSpec, ...]
    annotations: Mapping[str, str]
    cdi_devices: tuple[str, ...]

    @classmethod
    def from_pb(cls, response: dp_pb.ContainerAllocateResponse) -> AllocateResult:
        return cls(
            envs=dict(response.envs),
            mounts=tuple(
                Mount(container_path=m.container_path, host_path=m.host_path, read_only=m.read_only)
                for m in response.mounts
            ),
            devices=tuple(
                DeviceSpec(
                    container_path=d.container_path,
                    host_path=d.host_path,
                    permissions=d.permissions,
                )
                for d in response.devices
            ),
            annotations=dict(response.annotations),
            cdi_devices=tuple(c.name for c in response.cdi_devices),
        )


class OptionNotAdvertisedError(Exception):
    """The kubelet would not make this call: the plugin did not advertise the option."""

    def __init__(self, resource_name: str, option: str) -> None:
        super().__init__(f"device plugin for {resource_name} did not advertise {option}")
        self.resource_name = resource_name
        self.option = option


class InvalidPluginResponseError(Exception):
    """The plugin answered, but with something the kubelet refuses (e.g. no container response)."""

    def __init__(self, method: str, reason: str) -> None:
        super().__init__(f"{method}: {reason}")
        self.method = method
        self.reason = reason
