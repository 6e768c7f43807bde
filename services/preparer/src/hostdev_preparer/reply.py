"""What the kubelet gets for a prepared claim: each device with its request and CDI IDs."""

from __future__ import annotations

from collections.abc import Iterable

from hostdev_cdi import Spec, metadata, names
from hostdev_events.claims import ClaimOutcome, PreparedDevice
from hostdev_events.state import AllocatedDevice
from hostdev_preparer.cdispec import spec_kind


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
