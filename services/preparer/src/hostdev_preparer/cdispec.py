"""What a prepared claim hands the container runtime: its CDI spec and KEP-5304 metadata.

Pure translations of the applied plans, no I/O; the CDI writer writes what these return.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from hostdev_events.inventory import ContainerEdits
from hostdev_events.plans import AnyPlan
from hostdev_events.state import Checkpoint


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


def claim_spec(driver: str, claim_uid: str, plans: Sequence[AnyPlan]) -> Spec | None:
    """The claim's CDI spec, one CDI device per device with edits; None when nothing to inject."""
    devices = tuple(
        CdiDevice(
            name=names.claim_device_name(claim_uid, u.device), container_edits=_cdi_edits(u.edits)
        )
        for u in plans
        if u.edits.device_nodes or u.edits.mounts or u.edits.env or u.edits.net_devices
    )
    if not devices:
        return None
    draft = Spec(cdi_version="0.3.0", kind=spec_kind(driver), devices=devices)
    return Spec(cdi_version=minimum_version(draft), kind=draft.kind, devices=devices)


def encoded_specs(spec: Spec | None) -> tuple[bytes, ...]:
    """The spec files to write for a claim."""
    return () if spec is None else (encode_spec(spec),)


def metadata_items(
    driver: str,
    checkpoint: Checkpoint,
    applied: Sequence[AnyPlan],
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
