"""Plain data of the kubelet simulator: wire constants, call results, health reports, errors."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Protocol

import grpc

from hostdev_kubelet_pb.dra.v1 import api_pb2 as dra_v1
from hostdev_kubelet_pb.dra.v1beta1 import api_pb2 as dra_v1beta1
from hostdev_kubelet_pb.dra_health.v1alpha1 import api_pb2 as health_v1alpha1

DRAVersion = Literal["v1", "v1beta1"]
HealthState = Literal["Healthy", "Unhealthy", "Unknown"]

# Tokens a 1.34-1.36 kubelet understands in PluginInfo.supported_versions.
SERVICE_TOKENS: Final[dict[str, DRAVersion]] = {
    "v1.DRAPlugin": "v1",
    "v1beta1.DRAPlugin": "v1beta1",
}
HEALTH_TOKEN: Final = "v1alpha1.DRAResourceHealth"

# Full gRPC service names; these, not the tokens above, go into method paths.
DRA_SERVICES: Final[dict[DRAVersion, str]] = {
    "v1": "k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin",
    "v1beta1": "k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin",
}
HEALTH_SERVICE: Final = "v1alpha1.DRAResourceHealth"

# Kubelet deadline for NodePrepareResources and NodeUnprepareResources.
DRA_CALL_TIMEOUT: Final = 45.0

_HEALTH_NAMES: Final[dict[int, HealthState]] = {
    health_v1alpha1.HEALTHY: "Healthy",
    health_v1alpha1.UNHEALTHY: "Unhealthy",
}


class ClaimLike(Protocol):
    """Anything naming a ResourceClaim: ClaimRef, a generated Claim message, a model object."""

    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def uid(self) -> str: ...


@dataclass(frozen=True)
class ClaimRef:
    """The three fields the kubelet sends for a claim."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class PluginInfoRecord:
    """GetInfo's answer exactly as received (endpoint not yet substituted)."""

    type: str
    name: str
    endpoint: str
    supported_versions: tuple[str, ...]


@dataclass(frozen=True)
class RegistrationStatusRecord:
    """What the simulator sent in NotifyRegistrationStatus."""

    plugin_registered: bool
    error: str


@dataclass(frozen=True)
class PreparedDevice:
    """One Device of a NodePrepareResourceResponse."""

    request_names: tuple[str, ...]
    pool_name: str
    device_name: str
    cdi_device_ids: tuple[str, ...]
    # None on v1beta1, and on v1 when the plugin left the optional field unset.
    share_id: str | None


@dataclass(frozen=True)
class PreparedClaim:
    """The plugin's answer for one claim of a NodePrepareResources call."""

    devices: tuple[PreparedDevice, ...]
    error: str


@dataclass(frozen=True)
class UnpreparedClaim:
    """The plugin's answer for one claim of a NodeUnprepareResources call."""

    error: str


def _verdict(
    method: str,
    requested: Sequence[ClaimRef],
    errors: dict[str, str],
) -> str | None:
    """The failure the kubelet would report for a response map, or None if it is accepted."""
    wanted = {c.uid: c for c in requested}
    unknown = sorted(uid for uid in errors if uid not in wanted)
    if unknown:
        return f"{method} returned result for unknown claim UID {unknown[0]}"
    for uid, error in errors.items():
        if error:
            claim = wanted[uid]
            return f"{method} failed for ResourceClaim {claim.namespace}/{claim.name}: {error}"
    skipped = [c for c in requested if c.uid not in errors]
    if skipped:
        return f"{method} skipped {len(skipped)} ResourceClaims"
    return None


@dataclass(frozen=True)
class PrepareOutcome:
    """A NodePrepareResources response converted to plain data, keyed by claim UID."""

    version: DRAVersion
    requested: tuple[ClaimRef, ...]
    claims: dict[str, PreparedClaim]

    @property
    def kubelet_failure(self) -> str | None:
        """Why the kubelet would fail the pod's prepare step, or None if it would succeed."""
        errors = {uid: c.error for uid, c in self.claims.items()}
        return _verdict("NodePrepareResources", self.requested, errors)


@dataclass(frozen=True)
class UnprepareOutcome:
    """A NodeUnprepareResources response converted to plain data, keyed by claim UID."""

    version: DRAVersion
    requested: tuple[ClaimRef, ...]
    claims: dict[str, UnpreparedClaim]

    @property
    def kubelet_failure(self) -> str | None:
        """Why the kubelet would consider the unprepare failed, or None if it succeeded."""
        errors = {uid: c.error for uid, c in self.claims.items()}
        return _verdict("NodeUnprepareResources", self.requested, errors)


@dataclass(frozen=True)
class DeviceHealthReport:
    """One DeviceHealth entry of the health stream."""

    pool_name: str
    device_name: str
    health: HealthState
    last_updated_time: int
    health_check_timeout_seconds: int
    message: str


@dataclass(frozen=True)
class HealthUpdate:
    """One NodeWatchResourcesResponse: the driver's complete device health list."""

    devices: tuple[DeviceHealthReport, ...]
    # The kubelet judges staleness by receive time, not by last_updated_time.
    received_at: float


class PluginCallError(Exception):
    """A DRA call ended with a gRPC error status, which the kubelet treats as a failed call."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{method}: {code.name}: {details}")
        self.method = method
        self.code = code
        self.details = details


class RegistrationError(Exception):
    """Registration of a plugin socket did not succeed."""

    def __init__(self, socket_path: Path, reason: str) -> None:
        super().__init__(f"{socket_path}: {reason}")
        self.socket_path = socket_path
        self.reason = reason


class RegistrationRejectedError(RegistrationError):
    """The simulator refused the plugin and sent NotifyRegistrationStatus(false, reason)."""

    def __init__(
        self,
        socket_path: Path,
        reason: str,
        info: PluginInfoRecord,
        status_sent: RegistrationStatusRecord,
        notify_error: str | None,
    ) -> None:
        super().__init__(socket_path, reason)
        self.info = info
        self.status_sent = status_sent
        self.notify_error = notify_error


class UnsupportedPluginTypeError(RegistrationRejectedError):
    """PluginInfo.type was not "DRAPlugin"."""


class UnsupportedVersionsError(RegistrationRejectedError):
    """None of PluginInfo.supported_versions names a DRA service the kubelet speaks."""


class DuplicateEndpointError(RegistrationRejectedError):
    """Another registered instance of the same driver already uses this endpoint."""


class RegistrationTimeoutError(RegistrationError, TimeoutError):
    """The awaited driver did not register in time."""


class PluginNotRegisteredError(Exception):
    """The plugin instance was deregistered or the simulator was closed."""


def claim_refs(claims: Sequence[ClaimLike]) -> tuple[ClaimRef, ...]:
    return tuple(ClaimRef(namespace=c.namespace, name=c.name, uid=c.uid) for c in claims)


def prepared_device(d: dra_v1.Device | dra_v1beta1.Device) -> PreparedDevice:
    share_id: str | None = None
    if isinstance(d, dra_v1.Device) and d.HasField("share_id"):
        share_id = d.share_id
    return PreparedDevice(
        request_names=tuple(d.request_names),
        pool_name=d.pool_name,
        device_name=d.device_name,
        cdi_device_ids=tuple(d.cdi_device_ids),
        share_id=share_id,
    )


def dra_method_path(request: object, method: str) -> str:
    is_v1 = isinstance(
        request, dra_v1.NodePrepareResourcesRequest | dra_v1.NodeUnprepareResourcesRequest
    )
    version: DRAVersion = "v1" if is_v1 else "v1beta1"
    return f"/{DRA_SERVICES[version]}/{method}"


def ordered_uids(requested: Sequence[ClaimRef], keys: Sequence[str]) -> list[str]:
    """Request order first, then unexpected UIDs sorted, so results print predictably."""
    present = set(keys)
    first = [c.uid for c in requested if c.uid in present]
    return first + sorted(present - set(first))


def health_update(response: health_v1alpha1.NodeWatchResourcesResponse) -> HealthUpdate:
    """Convert one health stream message."""
    return HealthUpdate(
        devices=tuple(
            DeviceHealthReport(
                pool_name=d.device.pool_name,
                device_name=d.device.device_name,
                health=_HEALTH_NAMES.get(d.health, "Unknown"),
                last_updated_time=d.last_updated_time,
                health_check_timeout_seconds=d.health_check_timeout_seconds,
                message=d.message,
            )
            for d in response.devices
        ),
        received_at=time.time(),
    )
