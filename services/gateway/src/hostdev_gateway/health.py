"""The kubelet's DRA resource health stream (v1alpha1): every prepared device, resent in time.

The kubelet marks a device Unknown when its last report is older than the timeout
(30 s by default), so the full list is sent again every `resend_seconds` even when
nothing changed, and the stream never ends on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc

from hostdev_events import dp
from hostdev_events.alloc import is_device_entry
from hostdev_events.copies import lookup
from hostdev_gateway.feed import Feed
from hostdev_kubelet_pb.dra_health.v1alpha1 import api_pb2 as pb
from hostdev_kubelet_pb.dra_health.v1alpha1 import api_pb2_grpc as pb_grpc
from hostdev_runtime.clock import Clock, SystemClock

GONE = "device is gone from the host"


def prepared_devices(feed: Feed) -> list[str]:
    """Devices some DRA claim holds (device-plugin owners report through ListAndWatch)."""
    return sorted(
        entry
        for entry, hold in feed.holds.items()
        if is_device_entry(entry) and any(not h.startswith(dp.OWNER_PREFIX) for h in hold.holders)
    )


def report(feed: Feed, now: float, timeout_seconds: int) -> pb.NodeWatchResourcesResponse:
    """The full health list of prepared devices."""
    devices = []
    for name in prepared_devices(feed):
        device = lookup(feed.devices, name)  # a claim may hold a numbered copy (`kvm-3`)
        healthy = device is not None and device.healthy
        message = "" if healthy else (device.health_message if device else GONE)
        devices.append(
            pb.DeviceHealth(
                device=pb.DeviceIdentifier(pool_name=feed.node, device_name=name),
                health=pb.HEALTHY if healthy else pb.UNHEALTHY,
                last_updated_time=int(now),
                health_check_timeout_seconds=timeout_seconds,
                message=message,
            )
        )
    return pb.NodeWatchResourcesResponse(devices=devices)


class HealthService(pb_grpc.DRAResourceHealthServicer):
    """Streams health on every change and at least every `resend_seconds`."""

    def __init__(
        self, feed: Feed, resend_seconds: float, timeout_seconds: int, clock: Clock | None = None
    ) -> None:
        self.feed = feed
        self.clock = clock or SystemClock()
        self.resend_seconds = resend_seconds
        self.timeout_seconds = timeout_seconds

    async def NodeWatchResources(
        self,
        request: pb.NodeWatchResourcesRequest,
        context: grpc.aio.ServicerContext[
            pb.NodeWatchResourcesRequest, pb.NodeWatchResourcesResponse
        ],
    ) -> AsyncIterator[pb.NodeWatchResourcesResponse]:
        await self.feed.ready.wait()
        while True:
            version = self.feed.version
            yield report(self.feed, self.clock.now(), self.timeout_seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.feed.wait_newer(version), self.resend_seconds)
