"""The claim state machine's decisions: pure functions, no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from hostdev_cdi import ContainerEdits as CdiEdits
from hostdev_cdi import Device as CdiDevice
from hostdev_cdi import (
    DeviceNode,
    Mount,
    NetDevice,
    Spec,
    encode_spec,
    metadata,
    minimum_version,
    names,
)
from hostdev_events.cdi import RequestMetadata
from hostdev_events.claims import ClaimOutcome, PreparedDevice
from hostdev_events.inventory import ContainerEdits, Device
from hostdev_events.state import AllocatedDevice, Checkpoint, ClaimStep, HostUndo
from hostdev_families import sriov
from hostdev_kube import ResourceClaim


class ClaimRejected(Exception):
    """This claim cannot be prepared here; the message goes to the kubelet as the claim's error."""


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


def check_interface_names(plans: Iterable[HostUndo]) -> None:
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


def preparing(checkpoint: Checkpoint) -> bool:
    """Whether a checkpoint records a prepare that has not finished."""
    return checkpoint.step == ClaimStep.PREPARING


def spec_kind(driver: str) -> str:
    """The CDI kind of the claim specs this driver writes."""
    return names.kind(names.vendor_for(driver), names.DEVICE_CLASS)


def _cdi_edits(edits: ContainerEdits) -> CdiEdits:
    return CdiEdits(
        env=edits.env,
        device_nodes=tuple(
            DeviceNode(path=n.path, host_path=n.host_path, permissions=n.permissions)
            for n in edits.device_nodes
        ),
        mounts=tuple(
            Mount(
                host_path=m.host_path,
                container_path=m.container_path,
                options=("ro" if m.read_only else "rw", "nosuid", "nodev", "rbind"),
                type="bind",
            )
            for m in edits.mounts
        ),
        net_devices=tuple(
            NetDevice(host_interface_name=n.host_interface_name, name=n.name)
            for n in edits.net_devices
        ),
    )


def claim_spec(driver: str, claim_uid: str, undo: Sequence[HostUndo]) -> Spec | None:
    """The claim's CDI spec, one CDI device per device with edits; None when nothing to inject."""
    devices = tuple(
        CdiDevice(
            name=names.claim_device_name(claim_uid, u.device), container_edits=_cdi_edits(u.edits)
        )
        for u in undo
        if u.edits.device_nodes or u.edits.mounts or u.edits.env or u.edits.net_devices
    )
    if not devices:
        return None
    draft = Spec(cdi_version="0.3.0", kind=spec_kind(driver), devices=devices)
    return Spec(cdi_version=minimum_version(draft), kind=draft.kind, devices=devices)


def encoded_specs(spec: Spec | None) -> tuple[bytes, ...]:
    """The spec files to write for a claim."""
    return () if spec is None else (encode_spec(spec),)


POD_CLAIM_NAME_ANNOTATION = "resource.kubernetes.io/pod-claim-name"


def metadata_items(
    driver: str,
    checkpoint: Checkpoint,
    applied: Sequence[HostUndo],
    families: frozenset[str] | None = None,
) -> tuple[RequestMetadata, ...]:
    """One KEP-5304 metadata file per request with a device of `families` (None: all):
    what KubeVirt reads to find its device."""
    attributes = {u.device: msgspec.to_builtins(u.attributes) for u in applied}
    wanted = {d.request for d in checkpoint.devices if families is None or d.family in families}
    per_request: dict[str, list[dict[str, Any]]] = {}
    for device in checkpoint.devices:
        if device.request not in wanted:
            continue
        per_request.setdefault(device.request, []).append(
            {
                "driver": driver,
                "pool": device.pool,
                "name": device.device,
                "attributes": attributes.get(device.device, {}),
            }
        )
    claim = {
        "name": checkpoint.claim.name,
        "namespace": checkpoint.claim.namespace,
        "uid": checkpoint.claim.uid,
        "generation": checkpoint.claim_generation,
    }
    return tuple(
        RequestMetadata(
            request=request,
            container_path=metadata.container_path(
                driver, checkpoint.claim.name, checkpoint.pod_claim_name, request
            ),
            document=msgspec.Raw(
                metadata.document(
                    claim=claim,
                    pod_claim_name=checkpoint.pod_claim_name,
                    request=request,
                    devices=devices,
                )
            ),
        )
        for request, devices in sorted(per_request.items())
    )


def outcome(
    driver: str,
    claim_uid: str,
    devices: Iterable[AllocatedDevice],
    spec: Spec | None,
    metadata_requests: frozenset[str] = frozenset(),
) -> ClaimOutcome:
    """What the kubelet gets: each device with its request name and CDI IDs.

    The first device of each request also carries the ID that mounts the request's
    metadata file, as the upstream helper does.
    """
    in_spec = {d.name for d in spec.devices} if spec else set()
    prepared = []
    seen_requests: set[str] = set()
    for device in devices:
        cdi_name = names.claim_device_name(claim_uid, device.device)
        ids: tuple[str, ...] = (
            (names.qualified(spec_kind(driver), cdi_name),) if cdi_name in in_spec else ()
        )
        if device.request in metadata_requests and device.request not in seen_requests:
            ids += (metadata.cdi_id(driver, claim_uid, device.request),)
        seen_requests.add(device.request)
        prepared.append(
            PreparedDevice(
                request_names=(device.request,),
                pool=device.pool,
                device=device.device,
                cdi_device_ids=ids,
                share_id=device.share_id,
            )
        )
    return ClaimOutcome(devices=tuple(prepared))
