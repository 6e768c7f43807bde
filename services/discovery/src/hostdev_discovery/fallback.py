"""Shared devices on an API server that drops `allowMultipleAllocations`.

A kube-apiserver with DRAConsumableCapacity off clears that field on every write without
an error, and the scheduler would then give a shared device (/dev/kvm) to one claim at a
time. Discovery notices in two ways: the answer to each slice write is the stored object
(a shared device that lost the field there), and a dry-run create, at start-up and every
`probe_seconds`, shows what the server would keep on a new slice (which also catches a
gate turned off after slices were stored: the server keeps the field on objects that
already use it, yet its scheduler ignores it).

While the field is dropped each shared device is published as numbered exclusive copies
(`kvm-0` ... `kvm-<n-1>`, see `hostdev_events.copies`) that the preparer maps back to the
device, so up to n claims hold it at once. When copies cannot be published the device is
published as the server will store it, exclusive, and that is said at ERROR and in a
metric. Each change of mode is logged once and sets `changed`, so the slices follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import msgspec

from hostdev_discovery.slices import Pool, body
from hostdev_events.copies import copies_fit, copy_name
from hostdev_events.inventory import Device
from hostdev_kube import Kube, KubeError, SliceObject
from hostdev_runtime.metrics import SharedFallbackMetrics

logger = logging.getLogger(__name__)

FIELD = "allowMultipleAllocations"
PROBE_DEVICE = "probe"


class SharedFallback:
    """Whether shared devices go out as copies, and the expansion itself."""

    def __init__(self, copies: int, metrics: SharedFallbackMetrics, changed: asyncio.Event) -> None:
        self.copies = copies
        self.metrics = metrics
        self.changed = changed
        self.active = False
        self._exclusive: dict[str, str] = {}  # device -> why it has no copies, as last reported

    def expand(self, devices: Sequence[Device]) -> list[Device]:
        """The devices to publish: shared ones as copies while the server drops the field."""
        if not self.active:
            self._report_exclusive({})
            return list(devices)
        names = {d.name for d in devices}
        published: list[Device] = []
        exclusive: dict[str, str] = {}
        for device in devices:
            if not device.shareable:
                published.append(device)
                continue
            # No more copies than users the device has, never more than configured.
            count = min(_users(device) or self.copies, self.copies)
            copies = [copy_name(device.name, i) for i in range(count)]
            why = self._no_copies(device.name, copies, names)
            if why:
                exclusive[device.name] = why
                published.append(msgspec.structs.replace(device, shareable=False))
                continue
            # A copy is one whole user of the device: its capacities go with the copying.
            published.extend(
                msgspec.structs.replace(device, name=name, shareable=False, consumable={})
                for name in copies
            )
        self._report_exclusive(exclusive)
        return published

    def _no_copies(self, device: str, copies: list[str], taken: set[str]) -> str:
        if not copies:
            return "HOSTDEV_SHARED_COPIES is 0"
        if not copies_fit(device, len(copies)):
            return f"copy name {copies[-1]!r} is longer than 63 characters"
        clash = sorted(taken.intersection(copies))
        return f"copy name {clash[0]!r} is another device's name" if clash else ""

    def _report_exclusive(self, exclusive: dict[str, str]) -> None:
        self.metrics.exclusive.set(len(exclusive))
        if exclusive and exclusive != self._exclusive:
            logger.error(
                "shared devices published as exclusive: the API server drops "
                "allowMultipleAllocations and no copies can be published for them",
                extra={"devices": exclusive},
            )
        self._exclusive = exclusive

    def observe(self, sent: dict[str, Any], stored: SliceObject) -> None:
        """Compare a written slice with the server's answer; a dropped field turns copies on."""
        wanted = {d["name"] for d in sent["spec"].get("devices") or () if d.get(FIELD)}
        if not wanted:
            return
        kept = {d.get("name") for d in stored.spec.get("devices") or () if d.get(FIELD)}
        if wanted - kept:
            self._set(True, "a written slice came back without it")

    async def probe(self, kube: Kube, pool: Pool) -> None:
        """Ask with a dry-run create whether the server keeps the field; nothing is stored."""
        # No owner reference: the answer is all that matters, and nothing is stored.
        ownerless = Pool(node=pool.node, driver=pool.driver)
        draft = body(ownerless, 0, 1, [{"name": PROBE_DEVICE, FIELD: True}])
        try:
            answer = await kube.create_slice(draft, dry_run=True)
        except KubeError as err:
            self.metrics.probes.labels("error").inc()
            logger.warning(
                "could not ask the API server whether it keeps allowMultipleAllocations",
                extra={"error": str(err)},
            )
            return
        kept = any(d.get(FIELD) for d in answer.spec.get("devices") or ())
        self.metrics.probes.labels("kept" if kept else "dropped").inc()
        self._set(not kept, "a dry-run create came back without it")

    def _set(self, active: bool, why: str) -> None:
        if active == self.active:
            return
        self.active = active
        self.metrics.active.set(1 if active else 0)
        if active:
            logger.warning(
                "the API server drops allowMultipleAllocations (DRAConsumableCapacity is off): "
                "each shared device is published as numbered copies",
                extra={"copies": self.copies, "reason": why},
            )
        else:
            logger.warning(
                "the API server keeps allowMultipleAllocations again: shared devices are "
                "published once each, the copies are withdrawn"
            )
        self.changed.set()

    async def run(self, kube: Kube, pool: Pool, period: float, stopping: asyncio.Event) -> None:
        """Probe every `period` seconds until stopping."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), period)
            if not stopping.is_set():
                await self.probe(kube, pool)


def _users(device: Device) -> int:
    """How many claims a device with consumable capacities serves at their defaults
    (`slots: 4` gives 4 copies); 0 when it has none."""
    counts = [c.value // c.default for c in device.consumable.values() if c.default > 0]
    return min(counts) if counts else 0
