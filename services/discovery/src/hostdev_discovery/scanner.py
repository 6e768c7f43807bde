"""The discovery loop: scan the host, publish the inventory and the slices, wait, repeat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field

import msgspec
import nats.errors
from opentelemetry import trace

from hostdev_bus import Bus, BusError
from hostdev_discovery.health import HealthTracker
from hostdev_discovery.inventory import InventoryStore
from hostdev_discovery.not_offered import NotOfferedLog
from hostdev_discovery.publisher import SlicePublisher
from hostdev_events import subjects
from hostdev_events.inventory import Device, HealthChange, HealthChanged
from hostdev_families import Family, Health, check_health, survey_all
from hostdev_kube import KubeError
from hostdev_runtime import telemetry
from hostdev_runtime.clock import Clock
from hostdev_runtime.metrics import DeviceMetrics

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("hostdev_discovery")

RETRY_SECONDS = 2.0


@dataclass(slots=True)
class Scanner:
    """Owns the scan loop; `wake` asks for a scan (and a slice check) before the period ends."""

    families: dict[str, Family]
    store: InventoryStore
    publisher: SlicePublisher | None
    period: float
    wake: asyncio.Event
    health: HealthTracker
    bus: Bus
    node: str
    clock: Clock
    metrics: DeviceMetrics
    not_offered: NotOfferedLog = field(default_factory=NotOfferedLog)
    slices_stale: bool = True

    def _check(self, device: Device) -> Health:
        return check_health(self.families, device)

    def _scan(self) -> tuple[list[Device], list[HealthChange]]:
        survey = survey_all(self.families)
        self.not_offered.update(survey.not_offered)
        return self.health.update(self.clock.monotonic(), survey.offered, self._check)

    async def scan_once(self) -> list[Device]:
        """One pass: discover, check health, write the inventory, publish slices if needed.

        One trace: the devices written record this span, so a claim's trace links to the
        pass that published them, slices included."""
        with tracer.start_as_current_span("discover devices") as span:
            devices, changes = await asyncio.to_thread(self._scan)
            span.set_attribute("dra.device.count", len(devices))
            self._count(devices)
            changed = await self.store.publish(devices)
            if changes:
                with tracer.start_as_current_span(
                    "health changed",
                    attributes={telemetry.ATTR_DEVICES: [c.device for c in changes]},
                ):
                    event = HealthChanged(node=self.node, changes=tuple(changes))
                    await self.bus.publish(subjects.health_changed(self.node), event)
                logger.info(
                    "health changed", extra={"changes": [msgspec.to_builtins(c) for c in changes]}
                )
            if self.publisher is not None and (changed is not None or self.slices_stale):
                await self.publisher.reconcile(devices)
                self.slices_stale = False
        return devices

    def _count(self, devices: list[Device]) -> None:
        counts = Counter((d.family, "healthy" if d.healthy else "unhealthy") for d in devices)
        self.metrics.devices.clear()
        for (family, health), count in counts.items():
            self.metrics.devices.labels(family, health).set(count)

    async def scan_safely(self) -> float:
        """One pass; returns how long to wait (shorter when the API server was unreachable)."""
        if self.wake.is_set():
            self.slices_stale = True  # woken by the slice watch: someone changed our slices
        self.wake.clear()
        try:
            await self.scan_once()
        except KubeError as err:
            logger.warning("publishing slices failed", extra={"error": str(err)})
            self.slices_stale = True
            return min(self.period, RETRY_SECONDS)
        except (nats.errors.Error, BusError) as err:
            # A KV bucket just created on a JetStream cluster has no leader for a moment,
            # and a server may be restarting: the inventory is written on the next pass.
            logger.warning("publishing the inventory failed", extra={"error": repr(err)})
            self.slices_stale = True
            return min(self.period, RETRY_SECONDS)
        return self.period

    async def run(self, stopping: asyncio.Event, first_delay: float) -> None:
        """Scan until stopping; an unreachable API server is retried, not fatal."""
        delay = first_delay
        while not stopping.is_set():
            await _wait_any(self.wake, stopping, delay)
            if stopping.is_set():
                return
            delay = await self.scan_safely()


async def _wait_any(first: asyncio.Event, second: asyncio.Event, timeout: float) -> None:
    waits = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
