"""Which results and opaque parameters of a claim read from the API are this driver's here.

Pure functions, no I/O: what prepare plans from. A claim this node cannot serve raises
ClaimRejected with the reason the kubelet shows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from hostdev_events.inventory import Device
from hostdev_events.plans import AnyPlan
from hostdev_events.state import AllocatedDevice
from hostdev_families import sriov
from hostdev_kube import ResourceClaim
from hostdev_preparer.errors import ClaimRejected

POD_CLAIM_NAME_ANNOTATION = "resource.kubernetes.io/pod-claim-name"


def base_request(request: str) -> str:
    """The top-level request name: `<request>/<subrequest>` from firstAvailable loses the tail."""
    return request.partition("/")[0]


def our_devices(claim: ResourceClaim, uid: str, driver: str, pool: str) -> list[AllocatedDevice]:
    """This driver's allocation results of a claim read from the API, checked."""
    return [device for _, device in our_results(claim, uid, driver, pool)]


def our_results(
    claim: ResourceClaim, uid: str, driver: str, pool: str
) -> list[tuple[str, AllocatedDevice]]:
    """Like our_devices, each device with its result's request reference as allocated
    (`vf/netdev` for a subrequest of a firstAvailable request): what config is matched on."""
    if claim.metadata.uid != uid:
        raise ClaimRejected(
            f"claim {claim.metadata.namespace}/{claim.metadata.name} has UID "
            f"{claim.metadata.uid}, the kubelet asked for {uid} (the claim was replaced)"
        )
    allocation = claim.status.allocation
    if allocation is None:
        raise ClaimRejected(
            f"claim {claim.metadata.namespace}/{claim.metadata.name} is not allocated"
        )
    found: list[tuple[str, AllocatedDevice]] = []
    for result in allocation.devices.results:
        if result.driver != driver:
            continue  # another driver's device in a shared claim: not ours to touch
        if result.pool != pool:
            raise ClaimRejected(
                f"device {result.device} was allocated from pool {result.pool}; "
                f"this node serves pool {pool}"
            )
        device = AllocatedDevice(
            request=base_request(result.request),
            pool=result.pool,
            device=result.device,
            admin_access=bool(result.admin_access),
            share_id=result.share_id,
            consumed=whole_units(result.device, result.consumed_capacity),
        )
        found.append((result.request, device))
    return found


_WHOLE = re.compile(r"^(0|[1-9][0-9]{0,17})$")


def whole_units(device: str, quantities: dict[str, str]) -> dict[str, int]:
    """A result's consumedCapacity as whole units; the driver's capacities (`slots`) are
    counts, so anything else is refused rather than rounded."""
    out: dict[str, int] = {}
    for name, quantity in quantities.items():
        if not _WHOLE.match(quantity):
            raise ClaimRejected(
                f"device {device}: consumed capacity {name}={quantity!r} is not a whole number"
            )
        out[name] = int(quantity)
    return out


def capacity_use(device: Device, consumed: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """(totals, amounts taken) of a device's consumable capacities for one allocation: what
    the scheduler recorded, or each capacity's default where it recorded nothing (an
    allocation from before the feature, or a server that dropped the field)."""
    totals = {name: c.value for name, c in device.consumable.items()}
    taken = {name: consumed.get(name, c.default) for name, c in device.consumable.items()}
    return totals, taken


def config_applies(requests: Sequence[str], result_request: str) -> bool:
    """Whether a config entry's `requests` select an allocation result, as the upstream helper
    matches them: no requests select every result; a result's own reference (`vf`, or
    `vf/netdev` for a subrequest) selects it; a parent request (`vf`) selects the results
    of each of its subrequests. `vf/other` does not select a `vf/netdev` result."""
    return not requests or result_request in requests or base_request(result_request) in requests


def request_configs(claim: ResourceClaim, driver: str) -> dict[str, dict[str, Any]]:
    """This driver's opaque parameters per allocated request reference (`vf` or `vf/netdev`).

    Class entries come first and claim entries after them, each in the allocation's order;
    a later entry overrides an earlier one. Parameters are merged key by key, so a claim can
    change one setting of its class, and a subrequest's entry one setting of its parent's.
    """
    allocation = claim.status.allocation
    if allocation is None:
        return {}
    merged: dict[str, dict[str, Any]] = {
        r.request: {} for r in allocation.devices.results if r.driver == driver
    }
    ordered = sorted(allocation.devices.config, key=lambda c: c.source != "FromClass")
    for entry in ordered:
        if entry.opaque is None or entry.opaque.driver != driver:
            continue
        try:
            parameters = msgspec.json.decode(bytes(entry.opaque.parameters))
        except msgspec.DecodeError as err:
            raise ClaimRejected(f"opaque parameters are not JSON: {err}") from None
        if not isinstance(parameters, dict):
            raise ClaimRejected("opaque parameters must be a JSON object")
        for request, config in merged.items():
            if config_applies(entry.requests or (), request):
                config.update(parameters)
    return merged


def check_interface_names(plans: Iterable[AnyPlan]) -> None:
    """Refuse a claim whose network interfaces would share a name in the container: the
    runtime could move only one of them, after every host action was done. The defaults
    never collide; a name set in config for a request with several VFs would."""
    seen: dict[str, str] = {}
    for plan in plans:
        name = sriov.container_interface(plan)
        if name is None:
            continue
        if name in seen:
            raise ClaimRejected(
                f"devices {seen[name]} and {plan.device} would both be interface {name!r} "
                "in the container; give each request its own interfaceName, or leave it "
                "unset for a name of its own per VF"
            )
        seen[name] = plan.device
