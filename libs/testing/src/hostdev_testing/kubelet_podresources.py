"""The kubelet's pod-resources List service, answered from an assignment table a test sets."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc.aio

from hostdev_kubelet_pb.podresources.v1 import api_pb2 as pr_pb
from hostdev_kubelet_pb.podresources.v1 import api_pb2_grpc as pr_grpc


@dataclass(frozen=True)
class DeviceAssignment:
    """Device-plugin devices of one resource assigned to one container of a pod."""

    namespace: str
    pod: str
    container: str
    resource_name: str
    device_ids: tuple[str, ...]


class PodResourcesTable:
    """Which device-plugin devices each container holds, as the kubelet's device manager knows.

    Pods, containers and resources are listed in the order they were first assigned.
    """

    def __init__(self) -> None:
        # (namespace, pod) -> container -> resource name -> device IDs
        self._pods: dict[tuple[str, str], dict[str, dict[str, tuple[str, ...]]]] = {}
        self.list_calls = 0

    def assign(
        self, pod: str, namespace: str, container: str, resource: str, device_ids: Iterable[str]
    ) -> None:
        """Record (or replace) the devices of one resource held by one container."""
        containers = self._pods.setdefault((namespace, pod), {})
        containers.setdefault(container, {})[resource] = tuple(device_ids)

    def unassign(self, pod: str, namespace: str) -> None:
        """Forget a pod, as when it is deleted; unknown pods are ignored."""
        self._pods.pop((namespace, pod), None)

    def assignments(self) -> list[DeviceAssignment]:
        """The whole table, flattened."""
        return [
            DeviceAssignment(namespace, pod, container, resource, ids)
            for (namespace, pod), containers in self._pods.items()
            for container, resources in containers.items()
            for resource, ids in resources.items()
        ]

    def to_pb(self) -> pr_pb.ListPodResourcesResponse:
        return pr_pb.ListPodResourcesResponse(
            pod_resources=[
                pr_pb.PodResources(
                    name=pod,
                    namespace=namespace,
                    containers=[
                        pr_pb.ContainerResources(
                            name=container,
                            devices=[
                                pr_pb.ContainerDevices(resource_name=resource, device_ids=ids)
                                for resource, ids in resources.items()
                            ],
                        )
                        for container, resources in containers.items()
                    ],
                )
                for (namespace, pod), containers in self._pods.items()
            ]
        )


class PodResourcesLister(pr_grpc.PodResourcesListerServicer):
    """Serves v1.PodResourcesLister/List from a PodResourcesTable."""

    def __init__(self, table: PodResourcesTable) -> None:
        self.table = table

    async def List(
        self,
        request: pr_pb.ListPodResourcesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pr_pb.ListPodResourcesResponse:
        self.table.list_calls += 1
        return self.table.to_pb()


class PodResourcesServer:
    """A gRPC server for PodResourcesLister on a unix socket; it can be stopped and started again."""

    def __init__(self, table: PodResourcesTable) -> None:
        self.table = table
        self._server: grpc.aio.Server | None = None
        self.path: Path | None = None

    async def start(self, path: Path) -> None:
        if self._server is not None:
            raise RuntimeError(f"pod resources are already served on {self.path}")
        path = Path(path).absolute()
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_socket():
            path.unlink()
        server = grpc.aio.server()
        pr_grpc.add_PodResourcesListerServicer_to_server(PodResourcesLister(self.table), server)
        server.add_insecure_port(f"unix:{path}")
        await server.start()
        self._server, self.path = server, path

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
        self._server, self.path = None, None
