"""The claim's device status (status.devices) for devices handed over as network interfaces.

It says only what the driver knows when NodePrepareResources returns: the device is set
up as the claim's config asked, and its interface is listed in the claim's CDI spec as a
`netDevices` entry for the container runtime to move into the pod. The driver never sees
the move itself (the runtime does it when it creates the container), nor any address the
pod gets later, so the status claims neither: `Ready` means "configured as asked and
handed to the runtime" (KEP-4817's meaning of Ready), `networkData` holds the interface
name the driver asked for and the MAC it set or read, never IPs.

It is informational: a failure to write it is logged, never a failed prepare. Other
drivers' entries of the same claim are kept: the write is a read-modify-write of the
status with the claim's resourceVersion.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from hostdev_events.claims import ClaimRef
from hostdev_events.plans import AnyPlan
from hostdev_families import sriov
from hostdev_kube import Conflict, KubeError, NotFound

logger = logging.getLogger(__name__)

ATTEMPTS = 3
CONDITION_TYPE = "Ready"
CONDITION_REASON = "HandedToRuntime"


class StatusWriter(Protocol):
    """The two API calls this needs."""

    async def get_claim_object(self, namespace: str, name: str) -> dict[str, Any]:
        """The claim as stored."""
        ...

    async def replace_claim_status(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        """PUT the claim's status."""
        ...


def entries(
    driver: str,
    pool: str,
    applied: Sequence[AnyPlan],
    now: datetime.datetime,
    *,
    generation: int = 0,
) -> list[dict[str, Any]]:
    """status.devices entries for the devices handed over as network interfaces.

    `generation` is the claim's metadata.generation the prepare read (0: unknown, left out).
    """
    stamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    found = []
    for plan in applied:
        if not plan.edits.net_devices:
            continue
        net = plan.edits.net_devices[0]
        network: dict[str, Any] = {"interfaceName": net.name}
        mac = sriov.handed_mac(plan)
        if mac:
            network["hardwareAddress"] = mac
        condition: dict[str, Any] = {
            "type": CONDITION_TYPE,
            "status": "True",
            "reason": CONDITION_REASON,
            "message": (
                f"host interface {net.host_interface_name} is configured as the claim asked "
                f"and listed in the claim's CDI spec (netDevices) as {net.name}; the container "
                "runtime moves it into the pod when it creates the container, which this "
                "driver does not observe"
            ),
            "lastTransitionTime": stamp,
        }
        if generation > 0:
            condition["observedGeneration"] = generation
        found.append(
            {
                "driver": driver,
                "pool": pool,
                "device": plan.device,
                "conditions": [condition],
                "networkData": network,
            }
        )
    return found


async def write(
    writer: StatusWriter, claim: ClaimRef, driver: str, devices: set[str], new: list[dict[str, Any]]
) -> None:
    """Replace this driver's entries for `devices` with `new` (none: just remove them)."""
    for _ in range(ATTEMPTS):
        try:
            stored = await writer.get_claim_object(claim.namespace, claim.name)
            if stored.get("metadata", {}).get("uid") != claim.uid:
                return  # the claim was replaced; its status is not ours to change
            status = stored.setdefault("status", {})
            kept = [
                d
                for d in status.get("devices") or []
                if not (d.get("driver") == driver and d.get("device") in devices)
            ]
            if not new and len(kept) == len(status.get("devices") or []):
                return  # nothing of ours there
            status["devices"] = kept + new
            await writer.replace_claim_status(claim.namespace, claim.name, stored)
            return
        except Conflict:
            continue  # someone else wrote the status in between: read again
        except NotFound:
            return
        except KubeError as err:
            logger.warning(
                "device status not written", extra={"claim_uid": claim.uid, "error": str(err)}
            )
            return
    logger.warning("device status not written: kept changing", extra={"claim_uid": claim.uid})
