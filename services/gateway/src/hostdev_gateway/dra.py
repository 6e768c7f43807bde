"""The DRA kubelet plugin service, v1 and v1beta1, on one implementation."""

from __future__ import annotations

from typing import Any

import grpc

from hostdev_events.claims import ClaimOutcome, ClaimRef
from hostdev_gateway.claims import ClaimCalls, DriverUnavailable, TooManyClaims
from hostdev_gateway.health import HealthService
from hostdev_kubelet_pb.dra.v1 import api_pb2 as v1
from hostdev_kubelet_pb.dra.v1 import api_pb2_grpc as v1_grpc
from hostdev_kubelet_pb.dra.v1beta1 import api_pb2 as v1beta1
from hostdev_kubelet_pb.dra.v1beta1 import api_pb2_grpc as v1beta1_grpc
from hostdev_kubelet_pb.dra_health.v1alpha1 import api_pb2_grpc as health_grpc


def _claims(request: Any) -> list[ClaimRef]:
    return [ClaimRef(namespace=c.namespace, name=c.name, uid=c.uid) for c in request.claims]


def _prepared(pb: Any, outcome: ClaimOutcome, share_ids: bool) -> Any:
    if outcome.error:
        return pb.NodePrepareResourceResponse(error=outcome.error)
    devices = []
    for d in outcome.devices:
        device = pb.Device(
            request_names=list(d.request_names),
            pool_name=d.pool,
            device_name=d.device,
            cdi_device_ids=list(d.cdi_device_ids),
        )
        if share_ids and d.share_id is not None:
            device.share_id = d.share_id
        devices.append(device)
    return pb.NodePrepareResourceResponse(devices=devices)


class _DraService:
    """Shared body of both API versions; `pb` is the version's message module."""

    def __init__(self, calls: ClaimCalls, pb: Any, share_ids: bool) -> None:
        self.calls = calls
        self.pb = pb
        self.share_ids = share_ids

    async def NodePrepareResources(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        try:
            outcomes = await self.calls.prepare(_claims(request), context.time_remaining())
        except DriverUnavailable as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err))
        except TooManyClaims as err:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        return self.pb.NodePrepareResourcesResponse(
            claims={uid: _prepared(self.pb, o, self.share_ids) for uid, o in outcomes.items()}
        )

    async def NodeUnprepareResources(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        try:
            errors = await self.calls.unprepare(_claims(request), context.time_remaining())
        except DriverUnavailable as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err))
        except TooManyClaims as err:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        return self.pb.NodeUnprepareResourcesResponse(
            claims={
                uid: self.pb.NodeUnprepareResourceResponse(error=e) for uid, e in errors.items()
            }
        )


class DraV1(_DraService, v1_grpc.DRAPluginServicer):
    """k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin, with share IDs."""

    def __init__(self, calls: ClaimCalls) -> None:
        super().__init__(calls, v1, share_ids=True)


class DraV1beta1(_DraService, v1beta1_grpc.DRAPluginServicer):
    """k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin: the same, without share IDs."""

    def __init__(self, calls: ClaimCalls) -> None:
        super().__init__(calls, v1beta1, share_ids=False)


def server(calls: ClaimCalls, health: HealthService) -> grpc.aio.Server:
    """A gRPC server with both DRA versions and the health stream, on one socket."""
    srv = grpc.aio.server()
    v1_grpc.add_DRAPluginServicer_to_server(DraV1(calls), srv)
    v1beta1_grpc.add_DRAPluginServicer_to_server(DraV1beta1(calls), srv)
    health_grpc.add_DRAResourceHealthServicer_to_server(health, srv)
    return srv
