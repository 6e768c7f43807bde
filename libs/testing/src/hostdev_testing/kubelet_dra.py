"""Kubelet-side DRA connection of the simulator: a registered plugin and its calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import overload

import grpc
import grpc.aio

from hostdev_kubelet_pb.dra.v1 import api_pb2 as dra_v1
from hostdev_kubelet_pb.dra.v1 import api_pb2_grpc as dra_v1_grpc
from hostdev_kubelet_pb.dra.v1beta1 import api_pb2 as dra_v1beta1
from hostdev_kubelet_pb.dra.v1beta1 import api_pb2_grpc as dra_v1beta1_grpc
from hostdev_kubelet_pb.dra_health.v1alpha1 import api_pb2 as health_v1alpha1
from hostdev_kubelet_pb.dra_health.v1alpha1 import api_pb2_grpc as health_v1alpha1_grpc
from hostdev_testing.kubelet_types import (
    DRA_CALL_TIMEOUT,
    HEALTH_SERVICE,
    HEALTH_TOKEN,
    ClaimLike,
    DRAVersion,
    HealthUpdate,
    PluginCallError,
    PluginInfoRecord,
    PluginNotRegisteredError,
    PreparedClaim,
    PrepareOutcome,
    RegistrationStatusRecord,
    UnpreparedClaim,
    UnprepareOutcome,
    claim_refs,
    dra_method_path,
    health_update,
    ordered_uids,
    prepared_device,
)

# The `timeout` parameters below are gRPC deadlines the plugin sees on the wire, which
# asyncio.timeout cannot express, hence the ASYNC109 exemptions.


class HealthStream:
    """An open NodeWatchResources stream; iterate it, and cancel it (or use `async with`)."""

    def __init__(
        self,
        call: grpc.aio.UnaryStreamCall[
            health_v1alpha1.NodeWatchResourcesRequest, health_v1alpha1.NodeWatchResourcesResponse
        ],
    ) -> None:
        self._call = call
        self._responses = call.__aiter__()
        self._cancelled = False

    def __aiter__(self) -> HealthStream:
        return self

    async def __anext__(self) -> HealthUpdate:
        if self._cancelled:
            raise StopAsyncIteration
        try:
            response = await anext(self._responses)
        except grpc.aio.AioRpcError as e:
            if self._cancelled and e.code() == grpc.StatusCode.CANCELLED:
                raise StopAsyncIteration from None
            raise PluginCallError(
                f"/{HEALTH_SERVICE}/NodeWatchResources", e.code(), e.details() or ""
            ) from e
        except asyncio.CancelledError:
            # Our own cancel() surfaces as CancelledError; a cancelled task must still unwind.
            task = asyncio.current_task()
            if self._cancelled and (task is None or task.cancelling() == 0):
                raise StopAsyncIteration from None
            raise
        return health_update(response)

    def cancel(self) -> None:
        """End the stream from the kubelet side."""
        self._cancelled = True
        self._call.cancel()

    @property
    def done(self) -> bool:
        return self._cancelled or self._call.done()

    async def __aenter__(self) -> HealthStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()


@dataclass(eq=False)
class RegisteredPlugin:
    """A DRA plugin instance the simulator registered, and the kubelet's connection to it."""

    registration_socket: Path
    info: PluginInfoRecord
    # PluginInfo.endpoint, or the registration socket when that was empty.
    endpoint: str
    version: DRAVersion
    status_sent: RegistrationStatusRecord
    # The kubelet only logs an error answer to NotifyRegistrationStatus; so do we.
    notify_error: str | None
    sequence: int
    channel: grpc.aio.Channel = field(repr=False)
    registered_at: float = field(default_factory=time.monotonic)
    _closed: bool = field(default=False, init=False, repr=False)
    _streams: list[HealthStream] = field(default_factory=list, init=False, repr=False)

    @property
    def driver_name(self) -> str:
        return self.info.name

    @property
    def advertises_health(self) -> bool:
        return HEALTH_TOKEN in self.info.supported_versions

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise PluginNotRegisteredError(
                f"DRA driver {self.driver_name} instance at {self.registration_socket} "
                "is not registered any more"
            )

    @overload
    async def prepare_raw(
        self,
        request: dra_v1.NodePrepareResourcesRequest,
        *,
        timeout: float = DRA_CALL_TIMEOUT,
    ) -> dra_v1.NodePrepareResourcesResponse: ...
    @overload
    async def prepare_raw(
        self,
        request: dra_v1beta1.NodePrepareResourcesRequest,
        *,
        timeout: float = DRA_CALL_TIMEOUT,
    ) -> dra_v1beta1.NodePrepareResourcesResponse: ...
    async def prepare_raw(
        self,
        request: dra_v1.NodePrepareResourcesRequest | dra_v1beta1.NodePrepareResourcesRequest,
        *,
        timeout: float = DRA_CALL_TIMEOUT,
    ) -> dra_v1.NodePrepareResourcesResponse | dra_v1beta1.NodePrepareResourcesResponse:
        """Send a hand-built NodePrepareResources request; the message type picks the API."""
        self._check_open()
        try:
            if isinstance(request, dra_v1.NodePrepareResourcesRequest):
                stub_v1 = dra_v1_grpc.DRAPluginStub(self.channel)
                return await stub_v1.NodePrepareResources(request, timeout=timeout)
            stub_beta = dra_v1beta1_grpc.DRAPluginStub(self.channel)
            return await stub_beta.NodePrepareResources(request, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            raise PluginCallError(
                dra_method_path(request, "NodePrepareResources"), e.code(), e.details() or ""
            ) from e

    @overload
    async def unprepare_raw(
        self,
        request: dra_v1.NodeUnprepareResourcesRequest,
        *,
        timeout: float = DRA_CALL_TIMEOUT,
    ) -> dra_v1.NodeUnprepareResourcesResponse: ...
    @overload
    async def unprepare_raw(
        self,
        request: dra_v1beta1.NodeUnprepareResourcesRequest,
        *,
        timeout: float = DRA_CALL_TIMEOUT,
    ) -> dra_v1beta1.NodeUnprepareResourcesResponse: ...
    async def unprepare_raw(
        self,
        request: dra_v1.NodeUnprepareResourcesRequest | dra_v1beta1.NodeUnprepareResourcesRequest,
        *,
        timeout: float = DRA_CALL_TIMEOUT,
    ) -> dra_v1.NodeUnprepareResourcesResponse | dra_v1beta1.NodeUnprepareResourcesResponse:
        """Send a hand-built NodeUnprepareResources request; the message type picks the API."""
        self._check_open()
        try:
            if isinstance(request, dra_v1.NodeUnprepareResourcesRequest):
                stub_v1 = dra_v1_grpc.DRAPluginStub(self.channel)
                return await stub_v1.NodeUnprepareResources(request, timeout=timeout)
            stub_beta = dra_v1beta1_grpc.DRAPluginStub(self.channel)
            return await stub_beta.NodeUnprepareResources(request, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            raise PluginCallError(
                dra_method_path(request, "NodeUnprepareResources"), e.code(), e.details() or ""
            ) from e

    async def call_raw(
        self,
        method: str,
        payload: bytes,
        *,
        timeout: float = DRA_CALL_TIMEOUT,
    ) -> bytes:
        """Send arbitrary bytes to a full method path, for inputs no message type can express."""
        self._check_open()
        callable_: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(method)
        try:
            response = await callable_(payload, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            raise PluginCallError(method, e.code(), e.details() or "") from e
        if not isinstance(response, bytes):
            raise TypeError(f"{method}: expected raw bytes, got {type(response).__name__}")
        return response

    async def prepare(
        self,
        claims: Sequence[ClaimLike],
        *,
        version: DRAVersion | None = None,
        timeout: float = DRA_CALL_TIMEOUT,
    ) -> PrepareOutcome:
        """Call NodePrepareResources like the kubelet does for one pod's claims."""
        refs = claim_refs(claims)
        use = version or self.version
        if use == "v1":
            resp_v1 = await self.prepare_raw(
                dra_v1.NodePrepareResourcesRequest(
                    claims=[
                        dra_v1.Claim(namespace=c.namespace, name=c.name, uid=c.uid) for c in refs
                    ]
                ),
                timeout=timeout,
            )
            raw_v1 = dict(resp_v1.claims)
            prepared = {
                uid: PreparedClaim(
                    devices=tuple(prepared_device(d) for d in raw_v1[uid].devices),
                    error=raw_v1[uid].error,
                )
                for uid in ordered_uids(refs, list(raw_v1))
            }
        else:
            resp_beta = await self.prepare_raw(
                dra_v1beta1.NodePrepareResourcesRequest(
                    claims=[
                        dra_v1beta1.Claim(namespace=c.namespace, name=c.name, uid=c.uid)
                        for c in refs
                    ]
                ),
                timeout=timeout,
            )
            raw_beta = dict(resp_beta.claims)
            prepared = {
                uid: PreparedClaim(
                    devices=tuple(prepared_device(d) for d in raw_beta[uid].devices),
                    error=raw_beta[uid].error,
                )
                for uid in ordered_uids(refs, list(raw_beta))
            }
        return PrepareOutcome(version=use, requested=refs, claims=prepared)

    async def unprepare(
        self,
        claims: Sequence[ClaimLike],
        *,
        version: DRAVersion | None = None,
        timeout: float = DRA_CALL_TIMEOUT,
    ) -> UnprepareOutcome:
        """Call NodeUnprepareResources like the kubelet does once no pod uses the claims."""
        refs = claim_refs(claims)
        use = version or self.version
        errors: dict[str, str]
        if use == "v1":
            resp_v1 = await self.unprepare_raw(
                dra_v1.NodeUnprepareResourcesRequest(
                    claims=[
                        dra_v1.Claim(namespace=c.namespace, name=c.name, uid=c.uid) for c in refs
                    ]
                ),
                timeout=timeout,
            )
            errors = {uid: r.error for uid, r in resp_v1.claims.items()}
        else:
            resp_beta = await self.unprepare_raw(
                dra_v1beta1.NodeUnprepareResourcesRequest(
                    claims=[
                        dra_v1beta1.Claim(namespace=c.namespace, name=c.name, uid=c.uid)
                        for c in refs
                    ]
                ),
                timeout=timeout,
            )
            errors = {uid: r.error for uid, r in resp_beta.claims.items()}
        unprepared = {
            uid: UnpreparedClaim(error=errors[uid]) for uid in ordered_uids(refs, list(errors))
        }
        return UnprepareOutcome(version=use, requested=refs, claims=unprepared)

    def watch_health(self) -> HealthStream:
        """Open NodeWatchResources on the endpoint; iterate the result for HealthUpdates."""
        self._check_open()
        stub = health_v1alpha1_grpc.DRAResourceHealthStub(self.channel)
        stream = HealthStream(stub.NodeWatchResources(health_v1alpha1.NodeWatchResourcesRequest()))
        self._streams = [s for s in self._streams if not s.done]
        self._streams.append(stream)
        return stream

    def connectivity(self) -> grpc.ChannelConnectivity:
        """State of the kubelet's long-lived connection to the endpoint."""
        return self.channel.get_state(try_to_connect=False)

    async def close(self) -> None:
        """Drop the connection, as the kubelet does when it deregisters the plugin."""
        if self._closed:
            return
        self._closed = True
        for stream in self._streams:
            stream.cancel()
        self._streams.clear()
        await self.channel.close()
