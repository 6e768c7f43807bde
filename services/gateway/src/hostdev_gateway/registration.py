"""Plugin registration (pluginregistration v1): what the kubelet learns from GetInfo."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc

from hostdev_kubelet_pb.pluginregistration.v1 import api_pb2 as pb
from hostdev_kubelet_pb.pluginregistration.v1 import api_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

DRA_PLUGIN_TYPE = "DRAPlugin"
# Preferred first: kubelets 1.34+ take the first token they know; 1.32/1.33 know only v1beta1.
# The health token only tells the kubelet the same socket serves the health stream.
DRA_VERSIONS = ("v1.DRAPlugin", "v1beta1.DRAPlugin", "v1alpha1.DRAResourceHealth")


class Registration(pb_grpc.RegistrationServicer):
    """Answers GetInfo from memory (the kubelet allows 1 s) and logs the kubelet's verdict."""

    def __init__(self, plugin_type: str, name: str, endpoint: str, versions: Sequence[str]) -> None:
        self.info = pb.PluginInfo(
            type=plugin_type, name=name, endpoint=endpoint, supported_versions=list(versions)
        )
        self.registered: bool | None = None
        self.error = ""

    async def GetInfo(
        self,
        request: pb.InfoRequest,
        context: grpc.aio.ServicerContext[pb.InfoRequest, pb.PluginInfo],
    ) -> pb.PluginInfo:
        return self.info

    async def NotifyRegistrationStatus(
        self,
        request: pb.RegistrationStatus,
        context: grpc.aio.ServicerContext[pb.RegistrationStatus, pb.RegistrationStatusResponse],
    ) -> pb.RegistrationStatusResponse:
        self.registered = request.plugin_registered
        self.error = request.error
        if request.plugin_registered:
            logger.info("registered with the kubelet", extra={"plugin": self.info.name})
        else:
            logger.error(
                "the kubelet refused the registration",
                extra={"plugin": self.info.name, "error": request.error},
            )
        return pb.RegistrationStatusResponse()


def server(servicer: Registration) -> grpc.aio.Server:
    """A gRPC server with only the registration service."""
    srv = grpc.aio.server()
    pb_grpc.add_RegistrationServicer_to_server(servicer, srv)
    return srv
