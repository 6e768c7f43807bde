"""A device-plugin kubelet simulator: kubelet.sock registration, ListAndWatch, allocation calls."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import grpc
import grpc.aio

from hostdev_kubelet_pb.deviceplugin.v1beta1 import api_pb2 as dp_pb
from hostdev_kubelet_pb.deviceplugin.v1beta1 import api_pb2_grpc as dp_grpc
from hostdev_testing.kubelet_dp_plugin import (
    DpPluginConnection,
    PluginUnreachableError,
    dial_plugin,
)
from hostdev_testing.kubelet_dp_types import (
    CALL_TIMEOUT,
    CHECKPOINT_FILE,
    DIAL_TIMEOUT,
    DP_VERSION,
    HEALTHY,
    KUBELET_SOCKET,
    UNHEALTHY,
    AllocateResult,
    DeviceSpec,
    DpDevice,
    DpOptions,
    DpRegistration,
    DpRejection,
    InvalidPluginResponseError,
    Mount,
    OptionNotAdvertisedError,
    endpoint_problem,
    extended_resource_name_problem,
    remove_sockets,
)
from hostdev_testing.kubelet_podresources import (
    DeviceAssignment,
    PodResourcesServer,
    PodResourcesTable,
)
from hostdev_testing.kubelet_types import PluginCallError, PluginNotRegisteredError

__all__ = [
    "CHECKPOINT_FILE",
    "DP_VERSION",
    "HEALTHY",
    "KUBELET_SOCKET",
    "UNHEALTHY",
    "AllocateResult",
    "DeviceAssignment",
    "DevicePluginKubelet",
    "DeviceSpec",
    "DpDevice",
    "DpOptions",
    "DpRegistration",
    "DpRejection",
    "InvalidPluginResponseError",
    "Mount",
    "OptionNotAdvertisedError",
    "PluginCallError",
    "PluginNotRegisteredError",
    "PodResourcesTable",
    "extended_resource_name_problem",
]

_log = logging.getLogger(__name__)


class _Registration(dp_grpc.RegistrationServicer):
    def __init__(
        self,
        handler: Callable[
            [dp_pb.RegisterRequest, grpc.aio.ServicerContext[Any, Any]], Awaitable[dp_pb.Empty]
        ],
    ) -> None:
        self._handler = handler

    async def Register(
        self, request: dp_pb.RegisterRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> dp_pb.Empty:
        return await self._handler(request, context)


class DevicePluginKubelet:
    """The kubelet's device manager: serves Registration on kubelet.sock and calls plugins.

    Like the kubelet, start() deletes every socket in the directory (plugin sockets too; other
    files such as the checkpoint stay) before it serves a new kubelet.sock, and restart() does
    the same after dropping every registration. A plugin that dropped its ListAndWatch stream
    stays registered, with its devices marked unhealthy. Register failures are answered with
    INVALID_ARGUMENT (bad request) or UNAVAILABLE (the plugin could not be reached); the real
    kubelet returns plain errors, which arrive as UNKNOWN.

    A second plugin registering a resource name replaces the first as the endpoint the kubelet
    calls; the first keeps its connection until its plugin goes. Then kubelets up to 1.36,
    which key their clients by resource name only, disconnect the client registered under
    that name, which is by then the new one: its connection is closed and the devices turn
    unhealthy (kubernetes/kubernetes#121994). Kubelets with per-instance endpoints
    (kubernetes/kubernetes#135437, `instance_endpoints=True`) leave the new one alone.
    """

    def __init__(
        self,
        device_plugins_dir: Path,
        *,
        dial_timeout: float = DIAL_TIMEOUT,
        call_timeout: float = CALL_TIMEOUT,
        instance_endpoints: bool = False,
    ) -> None:
        self.dir = Path(device_plugins_dir).absolute()
        self.instance_endpoints = instance_endpoints
        # Replaced plugins whose connection is still open, as the kubelet keeps them.
        self._replaced: list[DpPluginConnection] = []
        self.dial_timeout = dial_timeout
        self.call_timeout = call_timeout
        self.pod_resources = PodResourcesTable()
        self._pr_server = PodResourcesServer(self.pod_resources)
        self._server: grpc.aio.Server | None = None
        self._plugins: dict[str, DpPluginConnection] = {}
        self._devices: dict[str, tuple[DpDevice, ...]] = {}
        self._history: list[DpRegistration] = []
        self._rejections: list[DpRejection] = []
        self._sequence = itertools.count(1)
        self._observers: list[Callable[[str, tuple[DpDevice, ...]], None]] = []
        # Bumped when the kubelet stops; a Register call spanning it must not commit.
        self._epoch = 0
        self._changed = asyncio.Condition()
        self._closed = False

    @property
    def socket_path(self) -> Path:
        return self.dir / KUBELET_SOCKET

    @property
    def rejections(self) -> list[DpRejection]:
        """Every Register call answered with an error, in order."""
        return list(self._rejections)

    def registered(self, resource: str) -> DpRegistration | None:
        """The plugin instance the kubelet currently uses for a resource."""
        plugin = self._plugins.get(resource)
        return None if plugin is None else plugin.registration

    def registrations(self, resource: str) -> list[DpRegistration]:
        """Every accepted registration of a resource since this object was created, in order."""
        return [r for r in self._history if r.resource_name == resource]

    def devices(self, resource: str) -> list[DpDevice]:
        """The latest device list of a resource ([] before the first ListAndWatch message)."""
        return list(self._devices.get(resource, ()))

    def observe(self, observer: Callable[[str, tuple[DpDevice, ...]], None]) -> None:
        """Call observer(resource, devices) for each ListAndWatch message, the moment the
        kubelet takes it (before anything else runs), e.g. to record the host's state then."""
        self._observers.append(observer)

    def stream_open(self, resource: str) -> bool:
        """Whether the current plugin's ListAndWatch stream is open."""
        plugin = self._plugins.get(resource)
        return plugin is not None and plugin.stream_open

    async def start(self) -> None:
        """Create the directory, delete its sockets and serve Registration on kubelet.sock."""
        self._check_open()
        if self._server is not None:
            return
        self.dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        for removed in remove_sockets(self.dir, keep=CHECKPOINT_FILE):
            _log.debug("device-plugin kubelet: removed socket %s", removed)
        server = grpc.aio.server()
        dp_grpc.add_RegistrationServicer_to_server(_Registration(self._register), server)
        server.add_insecure_port(f"unix:{self.socket_path}")
        await server.start()
        self._server = server

    async def restart(self) -> None:
        """What a kubelet restart does: stop, forget every plugin, wipe sockets, serve again.

        The device lists stay, marked unhealthy, until re-registered plugins send new ones.
        The pod-resources service (if served) goes down and comes back on the same path; its
        assignments survive, as the kubelet keeps them in its checkpoint.
        """
        self._check_open()
        await self._stop()
        pr_path = self._pr_server.path
        await self._pr_server.stop()
        await self.start()
        if pr_path is not None:
            await self._pr_server.start(pr_path)

    async def close(self) -> None:
        """Stop serving and drop every plugin connection."""
        if self._closed:
            return
        self._closed = True
        await self._stop()
        await self._pr_server.stop()

    async def __aenter__(self) -> DevicePluginKubelet:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def wait_registered(
        self,
        resource: str,
        timeout: float = 5.0,
        *,
        newer_than: DpRegistration | None = None,
    ) -> DpRegistration:
        """Wait until a plugin is registered for resource (one newer than newer_than, if given)."""
        after = 0 if newer_than is None else newer_than.sequence

        def ready() -> bool:
            current = self.registered(resource)
            return current is not None and current.sequence > after

        await self._wait(ready, timeout, lambda: f"no new registration of {resource}")
        current = self.registered(resource)
        assert current is not None
        return current

    async def wait_for(
        self,
        resource: str,
        predicate: Callable[[list[DpDevice]], bool],
        timeout: float = 5.0,
    ) -> list[DpDevice]:
        """Return the device list of resource once predicate(list) holds; checked on each change."""
        await self._wait(
            lambda: predicate(self.devices(resource)),
            timeout,
            lambda: f"devices of {resource} never matched; last list: {self.devices(resource)}",
        )
        return self.devices(resource)

    async def allocate(
        self, resource: str, device_ids: Sequence[str], *, strict: bool = True
    ) -> AllocateResult:
        """Call Allocate for one container, as at pod admission.

        With strict (the default) the IDs must be distinct, currently advertised Healthy
        devices, as the kubelet never offers others; pass strict=False to send anything.
        """
        plugin = self._plugin(resource)
        if strict:
            self._check_allocatable(resource, list(device_ids))
        return await plugin.allocate(device_ids)

    async def preferred_allocation(
        self,
        resource: str,
        available: Sequence[str],
        must_include: Sequence[str],
        size: int,
    ) -> list[str]:
        """Call GetPreferredAllocation; raises OptionNotAdvertisedError, like the kubelet skips it."""
        return await self._plugin(resource).preferred_allocation(available, must_include, size)

    async def pre_start(self, resource: str, device_ids: Sequence[str]) -> None:
        """Call PreStartContainer; raises OptionNotAdvertisedError unless the plugin requires it."""
        await self._plugin(resource).pre_start(device_ids)

    async def serve_pod_resources(self, path: Path) -> None:
        """Serve v1.PodResourcesLister on a unix socket at path, answered from pod_resources."""
        self._check_open()
        await self._pr_server.start(path)

    async def stop_pod_resources(self) -> None:
        """Stop answering pod-resources (a kubelet that serves it late, or with the API off)."""
        await self._pr_server.stop()

    def assign(
        self, pod: str, namespace: str, container: str, resource: str, device_ids: Iterable[str]
    ) -> None:
        """Record that a container holds devices of a resource; List reports it from now on."""
        self.pod_resources.assign(pod, namespace, container, resource, device_ids)

    def unassign(self, pod: str, namespace: str) -> None:
        """Forget a pod's devices, as when the pod is gone."""
        self.pod_resources.unassign(pod, namespace)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("DevicePluginKubelet is closed")

    def _plugin(self, resource: str) -> DpPluginConnection:
        plugin = self._plugins.get(resource)
        if plugin is None:
            raise PluginNotRegisteredError(f"no device plugin is registered for {resource}")
        return plugin

    def _check_allocatable(self, resource: str, ids: list[str]) -> None:
        healthy = {d.id for d in self._devices.get(resource, ()) if d.healthy}
        if not ids or len(set(ids)) != len(ids):
            raise ValueError(f"{resource}: device IDs must be non-empty and distinct: {ids}")
        missing = [i for i in ids if i not in healthy]
        if missing:
            raise ValueError(
                f"{resource}: the kubelet would not allocate {missing}: not advertised Healthy "
                "(pass strict=False to send them anyway)"
            )

    async def _wait(
        self, ready: Callable[[], bool], timeout: float, describe: Callable[[], str]
    ) -> None:
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(ready)
        except TimeoutError:
            raise TimeoutError(f"{describe()} within {timeout}s") from None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _stop(self) -> None:
        """The kubelet going away: no server, no plugin connections, devices unhealthy."""
        self._epoch += 1
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None
        plugins = [*self._plugins.values(), *self._replaced]
        self._plugins.clear()
        self._replaced.clear()
        for plugin in plugins:
            await plugin.close()
        for resource in self._devices:
            self._mark_unhealthy(resource)
        await self._notify()

    def _mark_unhealthy(self, resource: str) -> None:
        self._devices[resource] = tuple(
            DpDevice(id=d.id, health=UNHEALTHY, numa_nodes=d.numa_nodes)
            for d in self._devices.get(resource, ())
        )

    async def _register(
        self, request: dp_pb.RegisterRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> dp_pb.Empty:
        """Register, following the kubelet: validate, dial back, ask for options, then answer."""
        epoch = self._epoch
        resource, endpoint = request.resource_name, request.endpoint

        async def reject(code: grpc.StatusCode, reason: str) -> NoReturn:
            self._rejections.append(DpRejection(resource, request.version, endpoint, code, reason))
            _log.info("device-plugin kubelet: rejected %s: %s", resource, reason)
            await self._notify()
            await context.abort(code, reason)

        if request.version != DP_VERSION:
            await reject(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"requested API version {request.version!r} is not supported by the kubelet "
                f"(supported: [{DP_VERSION!r}])",
            )
        problem = extended_resource_name_problem(resource)
        if problem is not None:
            await reject(
                grpc.StatusCode.INVALID_ARGUMENT, f"invalid resource name {resource!r}: {problem}"
            )
        problem = endpoint_problem(endpoint)
        if problem is not None:
            await reject(grpc.StatusCode.INVALID_ARGUMENT, problem)

        try:
            channel, options = await dial_plugin(
                self.dir / endpoint, dial_timeout=self.dial_timeout, call_timeout=self.call_timeout
            )
        except PluginUnreachableError as e:
            await reject(grpc.StatusCode.UNAVAILABLE, str(e))
        if epoch != self._epoch or self._closed:
            await channel.close()
            await reject(grpc.StatusCode.UNAVAILABLE, "the kubelet restarted meanwhile")

        registration = DpRegistration(
            resource_name=resource,
            endpoint=endpoint,
            options=options,
            request_options=(
                DpOptions.from_pb(request.options) if request.HasField("options") else None
            ),
            sequence=next(self._sequence),
        )
        plugin = DpPluginConnection(registration, channel, call_timeout=self.call_timeout)
        old = self._plugins.get(resource)
        self._plugins[resource] = plugin
        self._history.append(registration)
        plugin.start_watch(self._on_devices)
        if old is not None and old.stream_open:
            self._replaced.append(old)
        elif old is not None:
            # Shielded: a kubelet stop cancelling this call must not leak the old connection.
            await asyncio.shield(old.close())
        await self._notify()
        return dp_pb.Empty()

    async def _on_devices(
        self, plugin: DpPluginConnection, devices: tuple[DpDevice, ...] | None
    ) -> None:
        """Take a ListAndWatch message of the current plugin; None means its stream ended."""
        resource = plugin.resource_name
        if self._plugins.get(resource) is not plugin:
            await self._on_replaced(plugin, devices)
            return
        if devices is None:
            # The kubelet keeps the resource, but nothing of it is allocatable any more.
            self._mark_unhealthy(resource)
        else:
            self._devices[resource] = devices
            for observer in self._observers:
                observer(resource, devices)
        await self._notify()

    async def _on_replaced(
        self, plugin: DpPluginConnection, devices: tuple[DpDevice, ...] | None
    ) -> None:
        """A message of a replaced plugin: the per-name kubelet still takes its lists, and
        when its stream ends it disconnects whichever client the name has now."""
        if self.instance_endpoints:
            if devices is None and plugin in self._replaced:
                self._replaced.remove(plugin)
            return
        resource = plugin.resource_name
        if devices is not None:
            self._devices[resource] = devices
        else:
            if plugin in self._replaced:
                self._replaced.remove(plugin)
            current = self._plugins.get(resource)
            if current is not None:
                _log.info("device-plugin kubelet: dropping the client of %s", resource)
                await current.close()
                self._mark_unhealthy(resource)
        await self._notify()
