"""The DRA kubelet plugin service, v1 and v1beta1, typed with their generated messages.

Both versions carry the same calls; the claims go to the preparer once (ClaimCalls) and
each version builds its own reply types. v1beta1 has no share IDs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import grpc

from hostdev_events.claims import ClaimOutcome, ClaimRef
from hostdev_gateway.claims import ClaimCalls, DriverUnavailable, TooManyClaims
from hostdev_gateway.health import HealthService
from hostdev_kubelet_pb.dra.v1 import api_pb2 as v1
from hostdev_kubelet_pb.dra.v1 import api_pb2_grpc as v1_grpc
from hostdev_kubelet_pb.dra.v1beta1 import api_pb2 as v1beta1
from hostdev_kubelet_pb.dra.v1beta1 import api_pb2_grpc as v1beta1_grpc
from hostdev_kubelet_pb.dra_health.v1alpha1 import api_pb2_grpc as health_grpc

Context = grpc.aio.ServicerContext[object, object]


class _KubeletClaim(Protocol):
    """A claim as both API versions name it."""

    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def uid(self) -> str: ...


def _claims(claims: Iterable[_KubeletClaim]) -> list[ClaimRef]:
    return [ClaimRef(namespace=c.namespace, name=c.name, uid=c.uid) for c in claims]


async def _prepare(
    calls: ClaimCalls, claims: Iterable[_KubeletClaim], context: Context
) -> dict[str, ClaimOutcome]:
    try:
        return await calls.prepare(_claims(claims), context.time_remaining())
    except DriverUnavailable as err:
        await context.abort(grpc.StatusCode.UNAVAILABLE, str(err))
        raise  # abort raises; this line only tells the type checker
    except TooManyClaims as err:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        raise


async def _unprepare(
    calls: ClaimCalls, claims: Iterable[_KubeletClaim], context: Context
) -> dict[str, str]:
    try:
        return await calls.unprepare(_claims(claims), context.time_remaining())
    except DriverUnavailable as err:
        await context.abort(grpc.StatusCode.UNAVAILABLE, str(err))
        raise  # abort raises; this line only tells the type checker
    except TooManyClaims as err:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        raise


def _prepared_v1(outcome: ClaimOutcome) -> v1.NodePrepareResourceResponse:
    if outcome.error:
        return v1.NodePrepareResourceResponse(error=outcome.error)
    devices = []
    for d in outcome.devices:
        device = v1.Device(
            request_names=list(d.request_names),
            pool_name=d.pool,
            device_name=d.device,
            cdi_device_ids=list(d.cdi_device_ids),
        )
        if d.share_id is not None:
            device.share_id = d.share_id
        devices.append(device)
    return v1.NodePrepareResourceResponse(devices=devices)


def _prepared_v1beta1(outcome: ClaimOutcome) -> v1beta1.NodePrepareResourceResponse:
    if outcome.error:
        return v1beta1.NodePrepareResourceResponse(error=outcome.error)
    return v1beta1.NodePrepareResourceResponse(
        devices=[
            v1beta1.Device(
                request_names=list(d.request_names),
                pool_name=d.pool,
                device_name=d.device,
                cdi_device_ids=list(d.cdi_device_ids),
            )
            for d in outcome.devices
        ]
    )


class DraV1(v1_grpc.DRAPluginServicer):
    """k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin, with share IDs."""

    def __init__(self, calls: ClaimCalls) -> None:
        self.calls = calls

    async def NodePrepareResources(
        self, request: v1.NodePrepareResourcesRequest, context: Context
    ) -> v1.NodePrepareResourcesResponse:
        outcomes = await _prepare(self.calls, request.claims, context)
        return v1.NodePrepareResourcesResponse(
            claims={uid: _prepared_v1(o) for uid, o in outcomes.items()}
        )

    async def NodeUnprepareResources(
        self, request: v1.NodeUnprepareResourcesRequest, context: Context
    ) -> v1.NodeUnprepareResourcesResponse:
        errors = await _unprepare(self.calls, request.claims, context)
        return v1.NodeUnprepareResourcesResponse(
            claims={uid: v1.NodeUnprepareResourceResponse(error=e) for uid, e in errors.items()}
        )


class DraV1beta1(v1beta1_grpc.DRAPluginServicer):
    """k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin: the same, without share IDs."""

    def __init__(self, calls: ClaimCalls) -> None:
        self.calls = calls

    async def NodePrepareResources(
        self, request: v1beta1.NodePrepareResourcesRequest, context: Context
    ) -> v1beta1.NodePrepareResourcesResponse:
        outcomes = await _prepare(self.calls, request.claims, context)
        return v1beta1.NodePrepareResourcesResponse(
            claims={uid: _prepared_v1beta1(o) for uid, o in outcomes.items()}
        )

    async def NodeUnprepareResources(
        self, request: v1beta1.NodeUnprepareResourcesRequest, context: Context
    ) -> v1beta1.NodeUnprepareResourcesResponse:
        errors = await _unprepare(self.calls, request.claims, context)
        return v1beta1.NodeUnprepareResourcesResponse(
            claims={
                uid: v1beta1.NodeUnprepareResourceResponse(error=e) for uid, e in errors.items()
            }
        )


def server(calls: ClaimCalls, health: HealthService) -> grpc.aio.Server:
    """A gRPC server with both DRA versions and the health stream, on one socket."""
    srv = grpc.aio.server()
    v1_grpc.add_DRAPluginServicer_to_server(DraV1(calls), srv)
    v1beta1_grpc.add_DRAPluginServicer_to_server(DraV1beta1(calls), srv)
    health_grpc.add_DRAResourceHealthServicer_to_server(health, srv)
    return srv
