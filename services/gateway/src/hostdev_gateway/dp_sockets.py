"""Device plugin sockets and registration, redone whenever the kubelet restarts.

A restarting kubelet deletes every socket in its device plugin directory and makes a
new kubelet.sock; it never dials old plugins. So the gateway watches kubelet.sock and
its own sockets and, on any change, serves fresh sockets and registers again.

During a rolling update two gateways run at once, each with sockets named after its pod
UID; the newer one registers and the kubelet replaces the endpoint of the resource name.
Kubelets up to 1.36 key their clients by resource name only: when the old gateway's
ListAndWatch stream ends, they drop the client registered under that name, which is by
then the new gateway's. So a gateway whose stream the kubelet dropped while it keeps
serving registers that resource again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from hostdev_gateway.deviceplugin import ResourcePlugin, server
from hostdev_gateway.dp_model import plugin_socket_name
from hostdev_gateway.sockets import serve_unix, stop_unix
from hostdev_kubelet_pb.deviceplugin.v1beta1 import api_pb2 as pb
from hostdev_kubelet_pb.deviceplugin.v1beta1 import api_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

KUBELET_SOCKET = "kubelet.sock"
VERSION = "v1beta1"
CHECK_SECONDS = 0.2  # a kubelet restart is noticed within this; re-registration must be < 2 s


@dataclass(slots=True)
class _Served:
    plugin: ResourcePlugin
    path: Path
    server: grpc.aio.Server | None = None
    opened_before: int = 0  # the plugin's stream count when it last registered

    def dropped(self) -> bool:
        """The kubelet opened ListAndWatch after our last registration and closed it since."""
        return self.plugin.streams_opened > self.opened_before and self.plugin.streams_open == 0


@dataclass(slots=True)
class DevicePlugins:
    """Every configured resource's socket, registered with the kubelet."""

    directory: Path
    plugins: list[ResourcePlugin]
    instance: str = ""  # the pod UID: socket names of two gateways side by side differ
    served: list[_Served] = field(default_factory=list)
    kubelet_identity: tuple[int, int] | None = None
    registrations: int = 0
    # Runs before every (re)registration; an exception postpones it to the next check.
    before_register: Callable[[], Awaitable[None]] | None = None

    def _kubelet(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self.directory / KUBELET_SOCKET)
        except FileNotFoundError:
            return None
        return found.st_ino, found.st_ctime_ns

    def _intact(self) -> bool:
        return all(s.server is not None and s.path.exists() for s in self.served)

    async def _serve_all(self) -> None:
        await self._stop_all()
        for plugin in self.plugins:
            name = plugin_socket_name(plugin.spec.name, self.instance)
            item = _Served(plugin, self.directory / name)
            item.server = server(plugin)
            await serve_unix(item.server, item.path)
            self.served.append(item)

    async def _stop_all(self) -> None:
        for item in self.served:
            if item.server is not None:
                await stop_unix(item.server, item.path, grace=0.5)
        self.served.clear()

    async def _register(self, item: _Served) -> None:
        item.opened_before = item.plugin.streams_opened
        target = f"unix:{self.directory / KUBELET_SOCKET}"
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.RegistrationStub(channel)
            await stub.Register(
                pb.RegisterRequest(
                    version=VERSION,
                    endpoint=item.path.name,
                    resource_name=item.plugin.spec.name,
                    options=pb.DevicePluginOptions(get_preferred_allocation_available=True),
                ),
                timeout=10,
            )
        self.registrations += 1
        logger.info("registered with the kubelet", extra={"resource": item.plugin.spec.name})

    async def sync(self) -> None:
        """Serve and register again if the kubelet or our sockets changed."""
        identity = self._kubelet()
        if identity is None:
            return  # no kubelet (yet): nothing to register with
        if identity == self.kubelet_identity and self._intact():
            await self._register_dropped()
            return
        if self.before_register is not None:
            try:
                await self.before_register()
            except Exception as err:
                logger.warning("not registering yet", extra={"error": str(err)})
                return
        await self._serve_all()
        try:
            for item in self.served:
                await self._register(item)
        except grpc.aio.AioRpcError as err:
            logger.warning("registration failed; retrying", extra={"error": err.details()})
            return
        self.kubelet_identity = identity

    async def _register_dropped(self) -> None:
        for item in self.served:
            if item.dropped():
                logger.warning(
                    "the kubelet dropped our ListAndWatch stream; registering again",
                    extra={"resource": item.plugin.spec.name},
                )
                try:
                    await self._register(item)
                except grpc.aio.AioRpcError as err:
                    logger.warning("registration failed; retrying", extra={"error": err.details()})

    async def run(self, stopping: asyncio.Event) -> None:
        """Keep the plugins registered until stopping, then remove their sockets."""
        try:
            while not stopping.is_set():
                await self.sync()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), CHECK_SECONDS)
        finally:
            await self._stop_all()
