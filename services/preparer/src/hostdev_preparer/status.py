"""The claim's device status (status.devices): Ready, and network data for netdevice VFs.

Written only for devices that hand over a network interface, where a workload or a CNI
needs to know the interface and its address. It is informational: a failure to write it
is logged, never a failed prepare. Other drivers' entries of the same claim are kept:
the write is a read-modify-write of the status with the claim's resourceVersion.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from hostdev_events.claims import ClaimRef
from hostdev_events.state import HostUndo
from hostdev_kube import Conflict, KubeError, NotFound

logger = logging.getLogger(__name__)

ATTEMPTS = 3


class StatusWriter(Protocol):
    """The two API calls this needs."""

    async def get_claim_object(self, namespace: str, name: str) -> dict[str, Any]:
        """The claim as stored."""
        ...

    async def replace_claim_status(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        """PUT the claim's status."""
        ...


def entries(
    driver: str, pool: str, applied: Sequence[HostUndo], now: datetime.datetime
) -> list[dict[str, Any]]:
    """status.devices entries for the devices that moved a network interface."""
    stamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    found = []
    for plan in applied:
        if not plan.edits.net_devices:
            continue
        network: dict[str, Any] = {"interfaceName": plan.edits.net_devices[0].name}
        mac = plan.data.get("want.mac")
        if mac:
            network["hardwareAddress"] = mac
        found.append(
            {
                "driver": driver,
                "pool": pool,
                "device": plan.device,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Prepared",
                        "message": f"interface {plan.edits.net_devices[0].host_interface_name} moved in as {network['interfaceName']}",
                        "lastTransitionTime": stamp,
                    }
                ],
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
