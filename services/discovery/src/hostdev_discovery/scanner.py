"""The discovery loop: scan the host, publish the inventory and the slices, wait, repeat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from opentelemetry import trace

from hostdev_discovery.inventory import InventoryStore
from hostdev_discovery.publisher import SlicePublisher
from hostdev_events.inventory import Device
from hostdev_families import Family, discover_all
from hostdev_kube import KubeError

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("hostdev_discovery")

RETRY_SECONDS = 2.0


@dataclass(slots=True)
class Scanner:
    """Owns the scan loop; `wake` asks for a scan before the period is over."""

    families: dict[str, Family]
    store: InventoryStore
    publisher: SlicePublisher | None
    period: float
    wake: asyncio.Event

    async def scan_once(self) -> list[Device]:
        """One pass: discover, write the inventory, publish slices."""
        with tracer.start_as_current_span("discover devices") as span:
            devices = await asyncio.to_thread(discover_all, self.families)
            span.set_attribute("dra.device.count", len(devices))
            await self.store.publish(devices)
        if self.publisher is not None:
            await self.publisher.reconcile(devices)
        return devices

    async def scan_safely(self) -> float:
        """One pass; returns how long to wait (shorter when the API server was unreachable)."""
        self.wake.clear()
        try:
            await self.scan_once()
        except KubeError as err:
            logger.warning("publishing slices failed", extra={"error": str(err)})
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
