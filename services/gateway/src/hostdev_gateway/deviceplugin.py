"""The classic device plugin API (v1beta1), one servicer per resource name, fed from NATS."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import grpc
from opentelemetry import trace

from hostdev_bus import Bus, BusError, RemoteError
from hostdev_devconfig import ResourceSpec
from hostdev_events import subjects
from hostdev_events.alloc import Candidate, PreferDevices, Preferred
from hostdev_events.dp import AllocateDevices, DevicesAllocated, DpAllocation, DpPrepared
from hostdev_gateway import dp_model
from hostdev_gateway.feed import Feed
from hostdev_kubelet_pb.deviceplugin.v1beta1 import api_pb2 as pb
from hostdev_kubelet_pb.deviceplugin.v1beta1 import api_pb2_grpc as pb_grpc
from hostdev_runtime import telemetry

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("hostdev_gateway")

ALLOCATE_TIMEOUT = 30.0  # the kubelet gives Allocate no deadline of its own
DEVICES_ANNOTATION = "hostdev.k8s.io/devices"

Context = grpc.aio.ServicerContext[object, object]


def _device(offer: dp_model.Offered) -> pb.Device:
    device = pb.Device(ID=offer.id, health=offer.health)
    if offer.numa is not None:
        device.topology.nodes.append(pb.NUMANode(ID=offer.numa))
    return device


class ResourcePlugin(pb_grpc.DevicePluginServicer):
    """One extended resource: its IDs, their health, and allocation through the preparer."""

    def __init__(
        self,
        spec: ResourceSpec,
        feed: Feed,
        bus: Bus,
        node: str,
        cdi: bool,
        restoring: Callable[[str], frozenset[str]] = lambda resource: frozenset(),
    ) -> None:
        self.spec = spec
        self.feed = feed
        self.bus = bus
        self.node = node
        self.cdi = cdi
        self.restoring = restoring  # IDs of a resource held by pods, not yet rebuilt
        self.streams_open = 0  # ListAndWatch streams the kubelet holds now
        self.streams_opened = 0  # ... and ever opened, to tell a dropped stream from none yet

    def offers(self) -> list[dp_model.Offered]:
        """The IDs offered right now."""
        return dp_model.offered(
            self.spec, self.feed.devices, self.feed.holds, self.restoring(self.spec.name)
        )

    async def GetDevicePluginOptions(
        self, request: pb.Empty, context: Context
    ) -> pb.DevicePluginOptions:
        return pb.DevicePluginOptions(
            pre_start_required=False, get_preferred_allocation_available=True
        )

    async def ListAndWatch(
        self, request: pb.Empty, context: Context
    ) -> AsyncIterator[pb.ListAndWatchResponse]:
        self.streams_open += 1
        self.streams_opened += 1
        try:
            await self.feed.ready.wait()
            last: pb.ListAndWatchResponse | None = None
            while True:
                version = self.feed.version
                response = pb.ListAndWatchResponse(devices=[_device(o) for o in self.offers()])
                if response != last:
                    with tracer.start_as_current_span(
                        "ListAndWatch send", attributes={"dra.resource": self.spec.name}
                    ):
                        yield response
                    last = response
                await self.feed.wait_newer(version)
        finally:
            self.streams_open -= 1

    async def GetPreferredAllocation(
        self, request: pb.PreferredAllocationRequest, context: Context
    ) -> pb.PreferredAllocationResponse:
        by_id = {o.id: o for o in self.offers()}
        responses = []
        for container in request.container_requests:
            candidates = tuple(
                Candidate(
                    id=i, device=by_id[i].device, numa=by_id[i].numa, pcie_root=by_id[i].pcie_root
                )
                for i in container.available_deviceIDs
                if i in by_id
            )
            try:
                chosen = await self.bus.request(
                    subjects.alloc_prefer(self.node),
                    PreferDevices(
                        candidates=candidates,
                        must_include=tuple(container.must_include_deviceIDs),
                        size=container.allocation_size,
                    ),
                    Preferred,
                    5.0,
                )
            except BusError as err:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"allocator unavailable: {err}")
            responses.append(pb.ContainerPreferredAllocationResponse(deviceIDs=list(chosen.ids)))
        return pb.PreferredAllocationResponse(container_responses=responses)

    async def Allocate(self, request: pb.AllocateRequest, context: Context) -> pb.AllocateResponse:
        by_id = {o.id: o for o in self.offers()}
        responses = []
        for container in request.container_requests:
            unknown = [i for i in container.devices_ids if i not in by_id]
            if unknown:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{self.spec.name}: unknown device IDs {', '.join(unknown)}",
                )
            allocations = tuple(
                DpAllocation(id=i, device=by_id[i].device) for i in container.devices_ids
            )
            with tracer.start_as_current_span(
                "Allocate",
                kind=trace.SpanKind.SERVER,
                attributes={
                    "dra.resource": self.spec.name,
                    telemetry.ATTR_DEVICES: [a.device for a in allocations],
                },
            ):
                prepared = await self._allocate(allocations, context)
            responses.append(self._response(prepared))
        return pb.AllocateResponse(container_responses=responses)

    async def _allocate(
        self, allocations: tuple[DpAllocation, ...], context: Context
    ) -> DevicesAllocated:
        try:
            return await self.bus.request(
                subjects.dp_allocate(self.node),
                AllocateDevices(
                    resource=self.spec.name,
                    allocations=allocations,
                    timeout_ms=int(ALLOCATE_TIMEOUT * 1000),
                ),
                DevicesAllocated,
                ALLOCATE_TIMEOUT,
            )
        except RemoteError as err:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, err.detail)
        except BusError as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"preparer unavailable: {err}")

    def _response(self, allocated: DevicesAllocated) -> pb.ContainerAllocateResponse:
        prepared: tuple[DpPrepared, ...] = allocated.prepared
        response = pb.ContainerAllocateResponse(
            envs=dp_model.kubevirt_env(self.spec.name, prepared),
            annotations={DEVICES_ANNOTATION: ",".join(f"{p.id}={p.device}" for p in prepared)},
        )
        for item in prepared:
            if self.cdi:
                response.cdi_devices.extend(pb.CDIDevice(name=n) for n in item.cdi_device_ids)
                continue
            for node in item.edits.device_nodes:
                response.devices.append(
                    pb.DeviceSpec(
                        container_path=node.path,
                        host_path=node.host_path,
                        permissions=node.permissions,
                    )
                )
            for mount in item.edits.mounts:
                response.mounts.append(
                    pb.Mount(
                        container_path=mount.container_path,
                        host_path=mount.host_path,
                        read_only=mount.read_only,
                    )
                )
            for entry in item.edits.env:
                name, _, value = entry.partition("=")
                response.envs[name] = value
        return response

    async def PreStartContainer(
        self, request: pb.PreStartContainerRequest, context: Context
    ) -> pb.PreStartContainerResponse:
        return pb.PreStartContainerResponse()


def server(plugin: ResourcePlugin) -> grpc.aio.Server:
    """A gRPC server with the device plugin service of one resource."""
    srv = grpc.aio.server()
    pb_grpc.add_DevicePluginServicer_to_server(plugin, srv)
    return srv
