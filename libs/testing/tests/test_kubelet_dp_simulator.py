"""Tests for the device-plugin kubelet simulator against a small in-test device plugin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from hostdev_kubelet_pb.deviceplugin.v1beta1 import api_pb2 as dp_pb
from hostdev_kubelet_pb.deviceplugin.v1beta1 import api_pb2_grpc as dp_grpc
from hostdev_kubelet_pb.podresources.v1 import api_pb2 as pr_pb
from hostdev_kubelet_pb.podresources.v1 import api_pb2_grpc as pr_grpc
from hostdev_testing.kubelet_dp import (
    CHECKPOINT_FILE,
    AllocateResult,
    DevicePluginKubelet,
    DeviceSpec,
    DpDevice,
    DpOptions,
    Mount,
    OptionNotAdvertisedError,
    extended_resource_name_problem,
)

RESOURCE = "hostdev.example.com/kvm"


def _device(device_id: str, health: str = "Healthy", numa: tuple[int, ...] = ()) -> dp_pb.Device:
    return dp_pb.Device(
        ID=device_id,
        health=health,
        topology=dp_pb.TopologyInfo(nodes=[dp_pb.NUMANode(ID=n) for n in numa]),
    )


@dataclass
class FakeDevicePlugin(dp_grpc.DevicePluginServicer):
    """A device plugin stand-in serving DevicePlugin on <dir>/<endpoint> and registering itself."""

    directory: Path
    endpoint: str = "fake-kvm.sock"
    resource: str = RESOURCE
    options: dp_pb.DevicePluginOptions = field(default_factory=dp_pb.DevicePluginOptions)
    device_list: list[dp_pb.Device] = field(
        default_factory=lambda: [_device("kvm-0", numa=(0,)), _device("kvm-1", numa=(1,))]
    )
    calls: list[str] = field(default_factory=list)
    allocate_requests: list[list[list[str]]] = field(default_factory=list)
    stream_closed: asyncio.Event = field(default_factory=asyncio.Event)
    _streams: list[asyncio.Queue[list[dp_pb.Device] | None]] = field(default_factory=list)
    _server: grpc.aio.Server | None = None

    @property
    def socket(self) -> Path:
        return self.directory / self.endpoint

    async def start(self) -> None:
        server = grpc.aio.server()
        dp_grpc.add_DevicePluginServicer_to_server(self, server)
        server.add_insecure_port(f"unix:{self.socket}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None

    async def register(self, version: str = "v1beta1", endpoint: str | None = None) -> None:
        """Call Register on kubelet.sock; raises grpc.aio.AioRpcError when refused."""
        async with grpc.aio.insecure_channel(f"unix:{self.directory / 'kubelet.sock'}") as ch:
            await dp_grpc.RegistrationStub(ch).Register(
                dp_pb.RegisterRequest(
                    version=version,
                    endpoint=self.endpoint if endpoint is None else endpoint,
                    resource_name=self.resource,
                    options=self.options,
                ),
                timeout=5.0,
            )

    def set_devices(self, devices: list[dp_pb.Device]) -> None:
        self.device_list = devices
        for queue in self._streams:
            queue.put_nowait(devices)

    def end_streams(self) -> None:
        for queue in self._streams:
            queue.put_nowait(None)

    async def GetDevicePluginOptions(
        self, request: dp_pb.Empty, context: grpc.aio.ServicerContext[Any, Any]
    ) -> dp_pb.DevicePluginOptions:
        self.calls.append("GetDevicePluginOptions")
        return self.options

    async def ListAndWatch(
        self, request: dp_pb.Empty, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[dp_pb.ListAndWatchResponse]:
        self.calls.append("ListAndWatch")
        queue: asyncio.Queue[list[dp_pb.Device] | None] = asyncio.Queue()
        self._streams.append(queue)
        try:
            devices: list[dp_pb.Device] | None = self.device_list
            while devices is not None:
                yield dp_pb.ListAndWatchResponse(devices=devices)
                devices = await queue.get()
        finally:
            self._streams.remove(queue)
            self.stream_closed.set()

    async def GetPreferredAllocation(
        self, request: dp_pb.PreferredAllocationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> dp_pb.PreferredAllocationResponse:
        self.calls.append("GetPreferredAllocation")
        req = request.container_requests[0]
        rest = [i for i in req.available_deviceIDs if i not in req.must_include_deviceIDs]
        chosen = [*req.must_include_deviceIDs, *reversed(rest)][: req.allocation_size]
        return dp_pb.PreferredAllocationResponse(
            container_responses=[dp_pb.ContainerPreferredAllocationResponse(deviceIDs=chosen)]
        )

    async def Allocate(
        self, request: dp_pb.AllocateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> dp_pb.AllocateResponse:
        self.calls.append("Allocate")
        self.allocate_requests.append([list(c.devices_ids) for c in request.container_requests])
        ids = list(request.container_requests[0].devices_ids)
        return dp_pb.AllocateResponse(
            container_responses=[
                dp_pb.ContainerAllocateResponse(
                    envs={"KVM_DEVICES": ",".join(ids)},
                    mounts=[dp_pb.Mount(container_path="/etc/kvm", host_path="/srv/kvm")],
                    devices=[
                        dp_pb.DeviceSpec(
                            container_path="/dev/kvm", host_path="/dev/kvm", permissions="rw"
                        )
                    ],
                    annotations={"example.com/kvm": ids[0]},
                    cdi_devices=[dp_pb.CDIDevice(name=f"example.com/kvm={i}") for i in ids],
                )
            ]
        )

    async def PreStartContainer(
        self, request: dp_pb.PreStartContainerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> dp_pb.PreStartContainerResponse:
        self.calls.append("PreStartContainer")
        return dp_pb.PreStartContainerResponse()


StartPlugin = Callable[..., Awaitable[FakeDevicePlugin]]


@pytest.fixture
def dp_dir(short_dir: Path) -> Path:
    return short_dir / "dp"


@pytest.fixture
async def kubelet(dp_dir: Path) -> AsyncIterator[DevicePluginKubelet]:
    async with DevicePluginKubelet(dp_dir, dial_timeout=0.5) as sim:
        yield sim


@pytest.fixture
async def plugins(kubelet: DevicePluginKubelet, dp_dir: Path) -> AsyncIterator[StartPlugin]:
    started: list[FakeDevicePlugin] = []

    async def start(**kwargs: Any) -> FakeDevicePlugin:
        plugin = FakeDevicePlugin(directory=dp_dir, **kwargs)
        await plugin.start()
        started.append(plugin)
        return plugin

    yield start
    for plugin in started:
        await plugin.stop()


def _two_devices(devices: list[DpDevice]) -> bool:
    return len(devices) == 2


async def test_register_dials_back_for_plugin_options(
    kubelet: DevicePluginKubelet, plugins: StartPlugin
) -> None:
    """Register returns only after the simulator dialed the plugin and read its options."""
    plugin = await plugins(options=dp_pb.DevicePluginOptions(pre_start_required=True))

    await plugin.register()

    assert plugin.calls[0] == "GetDevicePluginOptions"
    registration = kubelet.registered(RESOURCE)
    assert registration is not None
    assert registration.endpoint == plugin.endpoint
    assert registration.options == DpOptions(pre_start_required=True)
    assert kubelet.registrations(RESOURCE) == [registration]


async def test_wrong_version_is_rejected_with_invalid_argument(
    kubelet: DevicePluginKubelet, plugins: StartPlugin
) -> None:
    """A RegisterRequest with a version other than v1beta1 fails and nothing is dialed."""
    plugin = await plugins()

    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        await plugin.register(version="v1alpha1")

    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "v1alpha1" in (excinfo.value.details() or "")
    assert plugin.calls == []
    assert kubelet.registered(RESOURCE) is None
    assert [r.version for r in kubelet.rejections] == ["v1alpha1"]


@pytest.mark.parametrize("resource", ["kvm", "example.com/", "kubernetes.io/kvm", "Bad_/kvm"])
async def test_invalid_resource_name_is_rejected(
    kubelet: DevicePluginKubelet, plugins: StartPlugin, resource: str
) -> None:
    """A resource name that is not a valid extended resource name fails Register."""
    plugin = await plugins(resource=resource)

    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        await plugin.register()

    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert kubelet.registered(resource) is None


async def test_endpoint_with_a_slash_is_rejected(
    kubelet: DevicePluginKubelet, plugins: StartPlugin
) -> None:
    """An endpoint that is a path rather than a file name in the directory fails Register."""
    plugin = await plugins()

    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        await plugin.register(endpoint=str(plugin.socket))

    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert plugin.calls == []


async def test_unreachable_endpoint_is_rejected_with_unavailable(
    kubelet: DevicePluginKubelet, plugins: StartPlugin
) -> None:
    """Register fails with UNAVAILABLE when nothing serves the advertised socket."""
    plugin = await plugins()

    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        await plugin.register(endpoint="nobody.sock")

    assert excinfo.value.code() == grpc.StatusCode.UNAVAILABLE
    assert kubelet.rejections[0].endpoint == "nobody.sock"


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("example.com/gpu", True),
        ("hostdev.k8s.io/kvm", True),
        ("example.com/a.b-c_d", True),
        ("gpu", False),
        ("example.com/a/b", False),
        ("Example.com/gpu", False),
        ("example.com/-gpu", False),
        ("k8s.io/gpu", False),
        ("nodes.kubernetes.io/gpu", False),
        ("requests.example.com/gpu", False),
        (f"example.com/{'g' * 64}", False),
    ],
)
def test_extended_resource_name_check(name: str, valid: bool) -> None:
    """Extended resource names need a non-Kubernetes DNS-subdomain domain and a short name."""
    assert (extended_resource_name_problem(name) is None) == valid


async def test_list_and_watch_first_list_and_update(
    kubelet: DevicePluginKubelet, plugins: StartPlugin
) -> None:
    """The first ListAndWatch list arrives, and an update replaces it."""
    plugin = await plugins()
    await plugin.register()

    first = await kubelet.wait_for(RESOURCE, _two_devices, timeout=5.0)
    plugin.set_devices([_device("kvm-0", numa=(0,)), _device("kvm-1", "Unhealthy")])
    updated = await kubelet.wait_for(RESOURCE, lambda ds: not ds[1].healthy, timeout=5.0)

    assert first == [DpDevice("kvm-0", "Healthy", (0,)), DpDevice("kvm-1", "Healthy", (1,))]
    assert updated == [DpDevice("kvm-0", "Healthy", (0,)), DpDevice("kvm-1", "Unhealthy", ())]
    assert kubelet.stream_open(RESOURCE)


async def test_ended_stream_marks_devices_unhealthy(
    kubelet: DevicePluginKubelet, plugins: StartPlugin
) -> None:
    """When the plugin ends ListAndWatch, every device of the resource becomes unhealthy."""
    plugin = await plugins()
    await plugin.register()
    await kubelet.wait_for(RESOURCE, _two_devices, timeout=5.0)

    plugin.end_streams()
    devices = await kubelet.wait_for(
        RESOURCE, lambda ds: not any(d.healthy for d in ds), timeout=5.0
    )

    assert [d.health for d in devices] == ["Unhealthy", "Unhealthy"]
    assert not kubelet.stream_open(RESOURCE)
    assert kubelet.registered(RESOURCE) is not None


async def test_registering_again_replaces_the_endpoint_and_keeps_the_old_stream(
    kubelet: DevicePluginKubelet, plugins: StartPlugin
) -> None:
    """A second registration of the resource becomes the endpoint the kubelet lists and
    allocates from; the first plugin's stream stays open until that plugin goes."""
    old = await plugins(endpoint="old.sock")
    await old.register()
    first = await kubelet.wait_registered(RESOURCE, timeout=5.0)
    new = await plugins(endpoint="new.sock", device_list=[_device("kvm-9")])

    await new.register()
    second = await kubelet.wait_registered(RESOURCE, timeout=5.0, newer_than=first)
    devices = await kubelet.wait_for(RESOURCE, lambda ds: len(ds) == 1, timeout=5.0)

    assert second.endpoint == "new.sock"
    assert devices == [DpDevice("kvm-9", "Healthy")]
    assert len(kubelet.registrations(RESOURCE)) == 2
    assert not old.stream_closed.is_set()
    await kubelet.allocate(RESOURCE, ["kvm-9"])
    assert new.calls.count("Allocate") == 1
    assert "Allocate" not in old.calls


async def test_old_plugin_ending_its_stream_drops_the_new_one_on_a_per_name_kubelet(
    kubelet: DevicePluginKubelet, plugins: StartPlugin
) -> None:
    """Kubelets up to 1.36 disconnect the client registered under the resource name when a
    replaced plugin's stream ends: the new plugin's stream closes, its devices turn unhealthy."""
    old = await plugins(endpoint="old.sock")
    await old.register()
    first = await kubelet.wait_registered(RESOURCE, timeout=5.0)
    new = await plugins(endpoint="new.sock", device_list=[_device("kvm-9")])
    await new.register()
    await kubelet.wait_registered(RESOURCE, timeout=5.0, newer_than=first)
    await kubelet.wait_for(RESOURCE, lambda ds: len(ds) == 1, timeout=5.0)

    await old.stop()
    await asyncio.wait_for(new.stream_closed.wait(), timeout=5.0)
    devices = await kubelet.wait_for(RESOURCE, lambda ds: not ds[0].healthy, timeout=5.0)
    assert devices == [DpDevice("kvm-9", "Unhealthy")]
    assert not kubelet.stream_open(RESOURCE)


async def test_old_plugin_ending_its_stream_leaves_the_new_one_on_a_per_instance_kubelet(
    dp_dir: Path, plugins: StartPlugin, kubelet: DevicePluginKubelet
) -> None:
    """With per-instance endpoints (kubelet 1.37+) the old plugin's end changes nothing."""
    await kubelet.close()
    async with DevicePluginKubelet(dp_dir, dial_timeout=0.5, instance_endpoints=True) as sim:
        old = await plugins(endpoint="old.sock")
        await old.register()
        first = await sim.wait_registered(RESOURCE, timeout=5.0)
        new = await plugins(endpoint="new.sock", device_list=[_device("kvm-9")])
        await new.register()
        await sim.wait_registered(RESOURCE, timeout=5.0, newer_than=first)
        await sim.wait_for(RESOURCE, lambda ds: len(ds) == 1, timeout=5.0)

        await old.stop()
        await asyncio.wait_for(old.stream_closed.wait(), timeout=5.0)
        await sim.allocate(RESOURCE, ["kvm-9"])
        assert sim.stream_open(RESOURCE)
        assert not new.stream_closed.is_set()
        assert sim.devices(RESOURCE) == [DpDevice("kvm-9", "Healthy")]


async def test_allocate_returns_the_plugin_response(
    kubelet: DevicePluginKubelet, plugins: StartPlugin
) -> None:
    """Allocate sends one container request and converts the plugin's answer to plain data."""
    plugin = await plugins()
    await plugin.register()
    await kubelet.wait_for(RESOURCE, _two_devices, timeout=5.0)

    result = await kubelet.allocate(RESOURCE, ["kvm-1", "kvm-0"])

    assert plugin.allocate_requests == [[["kvm-1", "kvm-0"]]]
    assert result == AllocateResult(
        envs={"KVM_DEVICES": "kvm-1,kvm-0"},
        mounts=(Mount(container_path="/etc/kvm", host_path="/srv/kvm", read_only=False),),
        devices=(DeviceSpec(container_path="/dev/kvm", host_path="/dev/kvm", permissions="rw"),),
        annotations={"example.com/kvm": "kvm-1"},
        cdi_devices=("example.com/kvm=kvm-1", "example.com/kvm=kvm-0"),
    )


async def test_allocate_refuses_devices_the_kubelet_would_not_offer(
    kubelet: DevicePluginKubelet, plugins: StartPlugin
) -> None:
    """Strict allocate rejects unknown or unhealthy IDs before calling the plugin."""
    plugin = await plugins(device_list=[_device("kvm-0"), _device("kvm-1", "Unhealthy")])
    await plugin.register()
    await kubelet.wait_for(RESOURCE, _two_devices, timeout=5.0)

    with pytest.raises(ValueError, match="kvm-1"):
        await kubelet.allocate(RESOURCE, ["kvm-1"])

    assert "Allocate" not in plugin.calls


async def test_preferred_allocation_needs_the_advertised_option(
    kubelet: DevicePluginKubelet, plugins: StartPlugin
) -> None:
    """GetPreferredAllocation is refused locally for a plugin that did not advertise it."""
    plugin = await plugins()
    await plugin.register()

    with pytest.raises(OptionNotAdvertisedError):
        await kubelet.preferred_allocation(RESOURCE, ["kvm-0", "kvm-1"], [], 1)

    assert "GetPreferredAllocation" not in plugin.calls


async def test_preferred_allocation_returns_the_plugin_choice(
    kubelet: DevicePluginKubelet, plugins: StartPlugin
) -> None:
    """For an advertising plugin the preferred IDs are the plugin's answer."""
    options = dp_pb.DevicePluginOptions(get_preferred_allocation_available=True)
    plugin = await plugins(options=options)
    await plugin.register()

    chosen = await kubelet.preferred_allocation(RESOURCE, ["kvm-0", "kvm-1", "kvm-2"], [], 2)

    assert chosen == ["kvm-2", "kvm-1"]


async def test_pre_start_reaches_a_plugin_that_requires_it(
    kubelet: DevicePluginKubelet, plugins: StartPlugin
) -> None:
    """PreStartContainer is sent to a plugin whose options set pre_start_required."""
    plugin = await plugins(options=dp_pb.DevicePluginOptions(pre_start_required=True))
    await plugin.register()

    assert "PreStartContainer" not in plugin.calls
    await kubelet.pre_start(RESOURCE, ["kvm-0"])

    # ListAndWatch runs in the background and may be recorded after it: look, do not index.
    assert plugin.calls.count("PreStartContainer") == 1


async def test_restart_wipes_sockets_and_sees_reregistration(
    kubelet: DevicePluginKubelet, plugins: StartPlugin, dp_dir: Path
) -> None:
    """A restart deletes every socket but the checkpoint survives, and re-registration is seen."""
    plugin = await plugins()
    await plugin.register()
    await kubelet.wait_for(RESOURCE, _two_devices, timeout=5.0)
    checkpoint = dp_dir / CHECKPOINT_FILE
    checkpoint.write_text("{}")

    await kubelet.restart()

    assert not plugin.socket.exists()
    assert checkpoint.read_text() == "{}"
    assert kubelet.socket_path.is_socket()
    assert kubelet.registered(RESOURCE) is None
    assert [d.healthy for d in kubelet.devices(RESOURCE)] == [False, False]
    # What the plugin does on noticing the new kubelet.sock: serve a fresh socket, register.
    await plugin.stop()
    await plugin.start()
    await plugin.register()
    again = await kubelet.wait_registered(RESOURCE, timeout=5.0)
    devices = await kubelet.wait_for(RESOURCE, lambda ds: all(d.healthy for d in ds), timeout=5.0)
    assert len(kubelet.registrations(RESOURCE)) == 2
    assert kubelet.registrations(RESOURCE)[-1] == again
    assert [d.id for d in devices] == ["kvm-0", "kvm-1"]


async def test_pod_resources_list_reports_assignments(
    kubelet: DevicePluginKubelet, short_dir: Path
) -> None:
    """List answers with the devices assigned per pod and container, without unassigned pods."""
    path = short_dir / "pr" / "kubelet.sock"
    await kubelet.serve_pod_resources(path)
    kubelet.assign("vm-a", "default", "compute", RESOURCE, ["kvm-0"])
    kubelet.assign("vm-a", "default", "compute", "example.com/tun", ["tun-0", "tun-1"])
    kubelet.assign("vm-b", "team", "main", RESOURCE, ["kvm-1"])
    kubelet.unassign("vm-b", "team")

    async with grpc.aio.insecure_channel(f"unix:{path}") as channel:
        response = await pr_grpc.PodResourcesListerStub(channel).List(
            pr_pb.ListPodResourcesRequest(), timeout=5.0
        )

    assert response == pr_pb.ListPodResourcesResponse(
        pod_resources=[
            pr_pb.PodResources(
                name="vm-a",
                namespace="default",
                containers=[
                    pr_pb.ContainerResources(
                        name="compute",
                        devices=[
                            pr_pb.ContainerDevices(resource_name=RESOURCE, device_ids=["kvm-0"]),
                            pr_pb.ContainerDevices(
                                resource_name="example.com/tun", device_ids=["tun-0", "tun-1"]
                            ),
                        ],
                    )
                ],
            )
        ]
    )
    assert kubelet.pod_resources.list_calls == 1
