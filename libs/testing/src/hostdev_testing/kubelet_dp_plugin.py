"""Kubelet-side connection of the device-plugin simulator: one plugin, its stream and calls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import grpc
import grpc.aio

from hostdev_kubelet_pb.deviceplugin.v1beta1 import api_pb2 as dp_pb
from hostdev_kubelet_pb.deviceplugin.v1beta1 import api_pb2_grpc as dp_grpc
from hostdev_testing.kubelet_dp_types import (
    CALL_TIMEOUT,
    DEVICE_PLUGIN_SERVICE,
    PRE_START_TIMEOUT,
    AllocateResult,
    DpDevice,
    DpOptions,
    DpRegistration,
    InvalidPluginResponseError,
    OptionNotAdvertisedError,
)
from hostdev_testing.kubelet_types import PluginCallError

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Called with each complete device list, and with None once the stream has ended by itself.
DeviceListener = Callable[["DpPluginConnection", tuple[DpDevice, ...] | None], Awaitable[None]]


class PluginUnreachableError(Exception):
    """The kubelet could not connect to a registering plugin or get its options."""

    def __init__(self, socket: Path, reason: str) -> None:
        super().__init__(f"{socket}: {reason}")
        self.socket = socket
        self.reason = reason


async def dial_plugin(
    socket: Path, *, dial_timeout: float, call_timeout: float = CALL_TIMEOUT
) -> tuple[grpc.aio.Channel, DpOptions]:
    """Connect like the kubelet (blocking, with a deadline) and call GetDevicePluginOptions.

    Returns the open channel and the options; on any failure the channel is closed.
    """
    channel = grpc.aio.insecure_channel(f"unix:{socket}")
    try:
        try:
            async with asyncio.timeout(dial_timeout):
                await channel.channel_ready()
        except TimeoutError:
            raise PluginUnreachableError(
                socket, f"cannot connect to the device plugin within {dial_timeout}s"
            ) from None
        stub: dp_grpc.DevicePluginAsyncStub = dp_grpc.DevicePluginStub(channel)
        try:
            options = await stub.GetDevicePluginOptions(dp_pb.Empty(), timeout=call_timeout)
        except grpc.aio.AioRpcError as e:
            raise PluginUnreachableError(
                socket, f"GetDevicePluginOptions failed: {e.code().name}: {e.details()}"
            ) from e
    except BaseException:
        await channel.close()
        raise
    return channel, DpOptions.from_pb(options)


class DpPluginConnection:
    """The kubelet's connection to one registered device plugin instance."""

    def __init__(
        self,
        registration: DpRegistration,
        channel: grpc.aio.Channel,
        *,
        call_timeout: float = CALL_TIMEOUT,
    ) -> None:
        self.registration = registration
        self.channel = channel
        self.call_timeout = call_timeout
        self._stub: dp_grpc.DevicePluginAsyncStub = dp_grpc.DevicePluginStub(channel)
        self._watch: asyncio.Task[None] | None = None
        self._stream_open = False

    @property
    def resource_name(self) -> str:
        return self.registration.resource_name

    @property
    def stream_open(self) -> bool:
        """Whether ListAndWatch was opened and has not ended."""
        return self._stream_open

    def start_watch(self, listener: DeviceListener) -> None:
        """Open ListAndWatch in the background and hand every message to listener."""
        if self._watch is None:
            self._stream_open = True
            self._watch = asyncio.create_task(
                self._run_watch(listener), name=f"list-and-watch {self.resource_name}"
            )

    async def _run_watch(self, listener: DeviceListener) -> None:
        call = self._stub.ListAndWatch(dp_pb.Empty())
        try:
            async for response in call:
                await listener(self, tuple(DpDevice.from_pb(d) for d in response.devices))
        except grpc.aio.AioRpcError as e:
            _log.info("ListAndWatch of %s ended: %s", self.resource_name, e.code().name)
        finally:
            self._stream_open = False
        await listener(self, None)

    async def allocate(self, device_ids: Sequence[str]) -> AllocateResult:
        """Allocate for one container: the kubelet sends one container request per call."""
        method = f"/{DEVICE_PLUGIN_SERVICE}/Allocate"
        request = dp_pb.AllocateRequest(
            container_requests=[dp_pb.ContainerAllocateRequest(devices_ids=list(device_ids))]
        )
        response = await _call(method, self._stub.Allocate(request, timeout=self.call_timeout))
        if not response.container_responses:
            raise InvalidPluginResponseError(method, "no container response")
        return AllocateResult.from_pb(response.container_responses[0])

    async def preferred_allocation(
        self, available: Sequence[str], must_include: Sequence[str], size: int
    ) -> list[str]:
        """GetPreferredAllocation for one container; only if the plugin advertised it."""
        if not self.registration.options.get_preferred_allocation_available:
            raise OptionNotAdvertisedError(self.resource_name, "get_preferred_allocation_available")
        method = f"/{DEVICE_PLUGIN_SERVICE}/GetPreferredAllocation"
        request = dp_pb.PreferredAllocationRequest(
            container_requests=[
                dp_pb.ContainerPreferredAllocationRequest(
                    available_deviceIDs=list(available),
                    must_include_deviceIDs=list(must_include),
                    allocation_size=size,
                )
            ]
        )
        response = await _call(
            method, self._stub.GetPreferredAllocation(request, timeout=self.call_timeout)
        )
        if not response.container_responses:
            raise InvalidPluginResponseError(method, "no container response")
        return list(response.container_responses[0].deviceIDs)

    async def pre_start(self, device_ids: Sequence[str]) -> None:
        """PreStartContainer with the kubelet's 30 s deadline; only if the plugin requires it."""
        if not self.registration.options.pre_start_required:
            raise OptionNotAdvertisedError(self.resource_name, "pre_start_required")
        method = f"/{DEVICE_PLUGIN_SERVICE}/PreStartContainer"
        request = dp_pb.PreStartContainerRequest(devices_ids=list(device_ids))
        await _call(method, self._stub.PreStartContainer(request, timeout=PRE_START_TIMEOUT))

    async def close(self) -> None:
        """End the stream and drop the connection; the listener hears nothing more."""
        if self._watch is not None:
            self._watch.cancel()
            # asyncio.wait neither raises the task's CancelledError nor swallows our own.
            await asyncio.wait({self._watch})
        self._stream_open = False
        await self.channel.close()


async def _call(method: str, call: Awaitable[_T]) -> _T:
    try:
        return await call
    except grpc.aio.AioRpcError as e:
        raise PluginCallError(method, e.code(), e.details() or "") from e
