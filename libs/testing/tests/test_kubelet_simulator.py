"""Tests for the DRA kubelet simulator against a small in-test DRA plugin over unix sockets."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from hostdev_kubelet_pb.dra.v1 import api_pb2 as dra_v1
from hostdev_kubelet_pb.dra.v1 import api_pb2_grpc as dra_v1_grpc
from hostdev_kubelet_pb.dra.v1beta1 import api_pb2 as dra_v1beta1
from hostdev_kubelet_pb.dra.v1beta1 import api_pb2_grpc as dra_v1beta1_grpc
from hostdev_kubelet_pb.dra_health.v1alpha1 import api_pb2 as health_pb
from hostdev_kubelet_pb.dra_health.v1alpha1 import api_pb2_grpc as health_grpc
from hostdev_kubelet_pb.pluginregistration.v1 import api_pb2 as reg_pb
from hostdev_kubelet_pb.pluginregistration.v1 import api_pb2_grpc as reg_grpc
from hostdev_testing.kubelet import (
    DRA_SERVICES,
    HEALTH_SERVICE,
    ClaimRef,
    DRAVersion,
    KubeletSimulator,
    PluginCallError,
    PluginNotRegisteredError,
    PreparedDevice,
    RegistrationStatusRecord,
    RegistrationTimeoutError,
    UnsupportedPluginTypeError,
    UnsupportedVersionsError,
)

DRIVER = "gpu.example.com"
BOTH = ("v1.DRAPlugin", "v1beta1.DRAPlugin")
CLAIMS = [
    ClaimRef(namespace="default", name="claim-a", uid="uid-a"),
    ClaimRef(namespace="team", name="claim-b", uid="uid-b"),
]


class _MethodRecorder(grpc.aio.ServerInterceptor):
    """Records the full method path of every call exactly as it arrived on the wire."""

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        self.seen.append(handler_call_details.method)
        return await continuation(handler_call_details)


@dataclass
class FakePlugin:
    """A DRA plugin stand-in: Registration on one socket, DRA v1/v1beta1 and health on another."""

    root: Path
    name: str = DRIVER
    versions: tuple[str, ...] = BOTH
    plugin_type: str = "DRAPlugin"
    # None: advertise the DRA socket; "": advertise nothing, serve DRA on the registration socket.
    endpoint: str | None = None
    reg_basename: str = ""
    claim_errors: dict[str, str] = field(default_factory=dict)
    drop_uids: set[str] = field(default_factory=set)
    extra_uids: list[str] = field(default_factory=list)
    abort_with: grpc.StatusCode | None = None

    info_calls: int = 0
    statuses: list[RegistrationStatusRecord] = field(default_factory=list)
    prepared: list[tuple[DRAVersion, list[ClaimRef]]] = field(default_factory=list)
    unprepared: list[tuple[DRAVersion, list[ClaimRef]]] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    _servers: list[grpc.aio.Server] = field(default_factory=list)

    @property
    def reg_socket(self) -> Path:
        return self.root / "plugins_registry" / (self.reg_basename or f"{self.name}-reg.sock")

    @property
    def dra_socket(self) -> Path:
        return self.root / "plugins" / self.name / "dra.sock"

    @property
    def advertised_endpoint(self) -> str:
        return str(self.dra_socket) if self.endpoint is None else self.endpoint

    def _server(self) -> grpc.aio.Server:
        server = grpc.aio.server(interceptors=[_MethodRecorder(self.methods)])
        self._servers.append(server)
        return server

    async def start(self) -> None:
        self.reg_socket.parent.mkdir(parents=True, exist_ok=True)
        self.dra_socket.parent.mkdir(parents=True, exist_ok=True)
        reg_server = self._server()
        reg_grpc.add_RegistrationServicer_to_server(_Registration(self), reg_server)
        dra_server = reg_server if self.endpoint == "" else self._server()
        dra_v1_grpc.add_DRAPluginServicer_to_server(_DRAv1(self), dra_server)
        dra_v1beta1_grpc.add_DRAPluginServicer_to_server(_DRAv1beta1(self), dra_server)
        health_grpc.add_DRAResourceHealthServicer_to_server(_Health(), dra_server)
        # The DRA service must be serving before the registration socket appears.
        if dra_server is not reg_server:
            dra_server.add_insecure_port(f"unix:{self.dra_socket}")
            await dra_server.start()
        reg_server.add_insecure_port(f"unix:{self.reg_socket}")
        await reg_server.start()

    async def stop(self) -> None:
        for server in self._servers:
            await server.stop(grace=None)
        self._servers.clear()
        self.reg_socket.unlink(missing_ok=True)
        self.dra_socket.unlink(missing_ok=True)

    def answer_prepare(self, claims: list[ClaimRef], with_share_id: bool) -> dict[str, Any]:
        """Per-claim (devices, error) the plugin returns; claim-b's device has no share_id."""
        answers: dict[str, Any] = {}
        for c in claims:
            if c.uid in self.drop_uids:
                continue
            device: dict[str, Any] = {
                "request_names": ["gpu"],
                "pool_name": "node-1",
                "device_name": f"gpu-{c.name}",
                "cdi_device_ids": [f"example.com/gpu={c.uid}"],
            }
            if with_share_id and c.name == "claim-a":
                device["share_id"] = f"share-{c.uid}"
            answers[c.uid] = ([device], self.claim_errors.get(c.uid, ""))
        for uid in self.extra_uids:
            answers[uid] = ([], "")
        return answers


def _refs(claims: Any) -> list[ClaimRef]:
    return [ClaimRef(namespace=c.namespace, name=c.name, uid=c.uid) for c in claims]


class _Registration(reg_grpc.RegistrationServicer):
    def __init__(self, plugin: FakePlugin) -> None:
        self.plugin = plugin

    async def GetInfo(
        self, request: reg_pb.InfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> reg_pb.PluginInfo:
        self.plugin.info_calls += 1
        return reg_pb.PluginInfo(
            type=self.plugin.plugin_type,
            name=self.plugin.name,
            endpoint=self.plugin.advertised_endpoint,
            supported_versions=list(self.plugin.versions),
        )

    async def NotifyRegistrationStatus(
        self, request: reg_pb.RegistrationStatus, context: grpc.aio.ServicerContext[Any, Any]
    ) -> reg_pb.RegistrationStatusResponse:
        self.plugin.statuses.append(
            RegistrationStatusRecord(
                plugin_registered=request.plugin_registered, error=request.error
            )
        )
        return reg_pb.RegistrationStatusResponse()


class _DRAv1(dra_v1_grpc.DRAPluginServicer):
    def __init__(self, plugin: FakePlugin) -> None:
        self.plugin = plugin

    async def NodePrepareResources(
        self,
        request: dra_v1.NodePrepareResourcesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> dra_v1.NodePrepareResourcesResponse:
        if self.plugin.abort_with is not None:
            await context.abort(self.plugin.abort_with, "driver not ready")
        claims = _refs(request.claims)
        self.plugin.prepared.append(("v1", claims))
        response = dra_v1.NodePrepareResourcesResponse()
        for uid, (devices, error) in self.plugin.answer_prepare(claims, True).items():
            response.claims[uid].CopyFrom(
                dra_v1.NodePrepareResourceResponse(
                    devices=[dra_v1.Device(**d) for d in devices], error=error
                )
            )
        return response

    async def NodeUnprepareResources(
        self,
        request: dra_v1.NodeUnprepareResourcesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> dra_v1.NodeUnprepareResourcesResponse:
        claims = _refs(request.claims)
        self.plugin.unprepared.append(("v1", claims))
        return dra_v1.NodeUnprepareResourcesResponse(
            claims={c.uid: dra_v1.NodeUnprepareResourceResponse() for c in claims}
        )


class _DRAv1beta1(dra_v1beta1_grpc.DRAPluginServicer):
    def __init__(self, plugin: FakePlugin) -> None:
        self.plugin = plugin

    async def NodePrepareResources(
        self,
        request: dra_v1beta1.NodePrepareResourcesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> dra_v1beta1.NodePrepareResourcesResponse:
        claims = _refs(request.claims)
        self.plugin.prepared.append(("v1beta1", claims))
        response = dra_v1beta1.NodePrepareResourcesResponse()
        for uid, (devices, error) in self.plugin.answer_prepare(claims, False).items():
            response.claims[uid].CopyFrom(
                dra_v1beta1.NodePrepareResourceResponse(
                    devices=[dra_v1beta1.Device(**d) for d in devices], error=error
                )
            )
        return response

    async def NodeUnprepareResources(
        self,
        request: dra_v1beta1.NodeUnprepareResourcesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> dra_v1beta1.NodeUnprepareResourcesResponse:
        claims = _refs(request.claims)
        self.plugin.unprepared.append(("v1beta1", claims))
        return dra_v1beta1.NodeUnprepareResourcesResponse(
            claims={c.uid: dra_v1beta1.NodeUnprepareResourceResponse() for c in claims}
        )


class _Health(health_grpc.DRAResourceHealthServicer):
    async def NodeWatchResources(
        self,
        request: health_pb.NodeWatchResourcesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[health_pb.NodeWatchResourcesResponse]:
        yield health_pb.NodeWatchResourcesResponse(
            devices=[
                health_pb.DeviceHealth(
                    device=health_pb.DeviceIdentifier(pool_name="node-1", device_name="gpu-0"),
                    health=health_pb.HEALTHY,
                    last_updated_time=1_700_000_000,
                ),
                health_pb.DeviceHealth(
                    device=health_pb.DeviceIdentifier(pool_name="node-1", device_name="gpu-1"),
                    health=health_pb.UNHEALTHY,
                    last_updated_time=1_700_000_001,
                    health_check_timeout_seconds=60,
                    message="ECC errors",
                ),
                health_pb.DeviceHealth(
                    device=health_pb.DeviceIdentifier(pool_name="node-1", device_name="gpu-2"),
                ),
            ]
        )
        # Like a real plugin, keep the stream open until the kubelet goes away.
        await asyncio.Event().wait()


@pytest.fixture
def root() -> Iterator[Path]:
    # pytest's tmp_path can push socket paths past the 108-byte sun_path limit.
    path = Path(tempfile.mkdtemp(prefix="ks-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def kubelet(root: Path) -> AsyncIterator[KubeletSimulator]:
    sim = KubeletSimulator(root / "plugins_registry")
    yield sim
    await sim.close()


@pytest.fixture
async def plugins(root: Path) -> AsyncIterator[Callable[..., Awaitable[FakePlugin]]]:
    started: list[FakePlugin] = []

    async def start(**kwargs: Any) -> FakePlugin:
        plugin = FakePlugin(root=root, **kwargs)
        await plugin.start()
        started.append(plugin)
        return plugin

    yield start
    for plugin in started:
        await plugin.stop()


StartPlugin = Callable[..., Awaitable[FakePlugin]]


async def test_registration_reads_plugin_info_and_notifies_success(
    kubelet: KubeletSimulator, plugins: StartPlugin
) -> None:
    """A DRA plugin is registered with its GetInfo answer and told so with status true."""
    plugin = await plugins(versions=(*BOTH, "v1alpha1.DRAResourceHealth"))

    registered = await kubelet.wait_for_driver(DRIVER, timeout=5.0)

    assert registered.info.type == "DRAPlugin"
    assert registered.info.name == DRIVER
    assert registered.info.supported_versions == (*BOTH, "v1alpha1.DRAResourceHealth")
    assert registered.endpoint == str(plugin.dra_socket)
    assert registered.registration_socket == plugin.reg_socket
    assert registered.version == "v1"
    assert registered.advertises_health
    assert registered.status_sent == RegistrationStatusRecord(plugin_registered=True, error="")
    assert registered.notify_error is None
    assert plugin.info_calls == 1
    assert plugin.statuses == [RegistrationStatusRecord(plugin_registered=True, error="")]
    assert plugin.methods == [
        "/pluginregistration.Registration/GetInfo",
        "/pluginregistration.Registration/NotifyRegistrationStatus",
    ]
    assert kubelet.plugins == [registered]


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        (("v1.DRAPlugin", "v1beta1.DRAPlugin"), "v1"),
        (("v1beta1.DRAPlugin", "v1.DRAPlugin"), "v1beta1"),
        (("v1alpha3.NodeService", "1.0.0", "v1beta1.DRAPlugin", "v1.DRAPlugin"), "v1beta1"),
        (("v1alpha1.DRAResourceHealth", "v1.DRAPlugin"), "v1"),
    ],
)
async def test_version_choice_follows_plugin_order(
    kubelet: KubeletSimulator,
    plugins: StartPlugin,
    versions: tuple[str, ...],
    expected: DRAVersion,
) -> None:
    """The first known service token in the plugin's own order wins, and calls use it."""
    plugin = await plugins(versions=versions)

    registered = await kubelet.wait_for_driver(DRIVER, timeout=5.0)
    await registered.prepare(CLAIMS[:1])

    assert registered.version == expected
    assert [version for version, _ in plugin.prepared] == [expected]
    assert plugin.methods[-1] == f"/{DRA_SERVICES[expected]}/NodePrepareResources"


async def test_kubelet_that_knows_only_v1beta1_picks_it(root: Path, plugins: StartPlugin) -> None:
    """A simulated 1.33 kubelet skips v1.DRAPlugin even when the plugin prefers it."""
    await plugins(versions=BOTH)

    async with KubeletSimulator(root / "plugins_registry", kubelet_versions=("v1beta1",)) as sim:
        registered = await sim.wait_for_driver(DRIVER, timeout=5.0)

    assert registered.version == "v1beta1"
    assert registered.closed


@pytest.mark.parametrize("versions", [("v1alpha3.NodeService", "1.0.0"), ()])
async def test_plugin_without_known_versions_is_rejected(
    kubelet: KubeletSimulator, plugins: StartPlugin, versions: tuple[str, ...]
) -> None:
    """Only unknown (or no) service tokens yield NotifyRegistrationStatus(false) and an error."""
    plugin = await plugins(versions=versions)

    with pytest.raises(UnsupportedVersionsError) as excinfo:
        await kubelet.wait_for_driver(DRIVER, timeout=5.0)

    assert len(plugin.statuses) == 1
    assert not plugin.statuses[0].plugin_registered
    assert "none of the services" in plugin.statuses[0].error
    assert excinfo.value.status_sent == plugin.statuses[0]
    assert excinfo.value.info.supported_versions == versions
    assert kubelet.plugins == []
    assert kubelet.rejections == [excinfo.value]


async def test_non_dra_plugin_type_is_rejected(
    kubelet: KubeletSimulator, plugins: StartPlugin
) -> None:
    """A plugin whose type is not DRAPlugin is told it was not registered."""
    plugin = await plugins(plugin_type="CSIPlugin")

    with pytest.raises(UnsupportedPluginTypeError):
        await kubelet.wait_for_driver(DRIVER, timeout=5.0)

    assert [s.plugin_registered for s in plugin.statuses] == [False]


async def test_empty_endpoint_means_the_registration_socket(
    kubelet: KubeletSimulator, plugins: StartPlugin
) -> None:
    """An empty PluginInfo.endpoint makes the simulator call DRA on the registration socket."""
    plugin = await plugins(endpoint="")

    registered = await kubelet.wait_for_driver(DRIVER, timeout=5.0)
    outcome = await registered.prepare(CLAIMS)

    assert registered.endpoint == str(plugin.reg_socket)
    assert outcome.kubelet_failure is None


async def test_sockets_with_dot_names_are_ignored(
    kubelet: KubeletSimulator, plugins: StartPlugin
) -> None:
    """A socket whose base name starts with a dot is never dialed."""
    hidden = await plugins(name="hidden.example.com", reg_basename=".hidden-reg.sock")
    await plugins()

    await kubelet.wait_for_driver(DRIVER, timeout=5.0)

    assert hidden.info_calls == 0
    assert [p.driver_name for p in kubelet.plugins] == [DRIVER]


async def test_unanswering_socket_stays_pending_while_others_register(
    kubelet: KubeletSimulator, plugins: StartPlugin, root: Path
) -> None:
    """A socket nobody answers on stays pending for retry and does not block other plugins."""
    stale_path = root / "plugins_registry" / "stale.example.com-reg.sock"
    stale_path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(stale_path))
        await plugins()

        registered = await kubelet.wait_for_driver(DRIVER, timeout=5.0)

        assert registered.driver_name == DRIVER
        assert list(kubelet.pending_sockets()) == [stale_path]
        assert "GetInfo failed" in kubelet.pending_sockets()[stale_path]


async def test_wait_for_absent_driver_times_out(kubelet: KubeletSimulator) -> None:
    """Waiting for a driver that never shows up ends in RegistrationTimeoutError."""
    with pytest.raises(RegistrationTimeoutError, match=r"absent\.example\.com"):
        await kubelet.wait_for_driver("absent.example.com", timeout=0.1)


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
async def test_prepare_and_unprepare_round_trip(
    kubelet: KubeletSimulator, plugins: StartPlugin, version: DRAVersion
) -> None:
    """Prepare and unprepare send the claims and convert the answers on either API version."""
    plugin = await plugins()
    registered = await kubelet.wait_for_driver(DRIVER, timeout=5.0)

    prepared = await registered.prepare(CLAIMS, version=version)
    unprepared = await registered.unprepare(CLAIMS, version=version)

    assert plugin.prepared == [(version, CLAIMS)]
    assert plugin.unprepared == [(version, CLAIMS)]
    assert list(prepared.claims) == ["uid-a", "uid-b"]
    claim_b = prepared.claims["uid-b"]
    assert claim_b.error == ""
    assert claim_b.devices == (
        PreparedDevice(
            request_names=("gpu",),
            pool_name="node-1",
            device_name="gpu-claim-b",
            cdi_device_ids=("example.com/gpu=uid-b",),
            share_id=None,
        ),
    )
    assert prepared.kubelet_failure is None
    assert prepared.version == version
    assert {uid: c.error for uid, c in unprepared.claims.items()} == {"uid-a": "", "uid-b": ""}
    assert unprepared.kubelet_failure is None


@pytest.mark.parametrize(("version", "share_id"), [("v1", "share-uid-a"), ("v1beta1", None)])
async def test_share_id_is_reported_on_v1_only(
    kubelet: KubeletSimulator,
    plugins: StartPlugin,
    version: DRAVersion,
    share_id: str | None,
) -> None:
    """share_id comes through on v1 when set, and is None on v1beta1 and when unset."""
    await plugins()
    registered = await kubelet.wait_for_driver(DRIVER, timeout=5.0)

    outcome = await registered.prepare(CLAIMS, version=version)

    assert outcome.claims["uid-a"].devices[0].share_id == share_id
    assert outcome.claims["uid-b"].devices[0].share_id is None


@pytest.mark.parametrize(
    ("setup", "failure"),
    [
        ({"claim_errors": {"uid-b": "device busy"}}, "ResourceClaim team/claim-b: device busy"),
        ({"drop_uids": {"uid-a"}}, "skipped 1 ResourceClaims"),
        ({"extra_uids": ["uid-zzz"]}, "unknown claim UID uid-zzz"),
    ],
)
async def test_kubelet_failure_mirrors_kubelet_checks(
    kubelet: KubeletSimulator, plugins: StartPlugin, setup: dict[str, Any], failure: str
) -> None:
    """Per-claim errors, skipped claims and unknown UIDs are what the kubelet would fail on."""
    await plugins(**setup)
    registered = await kubelet.wait_for_driver(DRIVER, timeout=5.0)

    outcome = await registered.prepare(CLAIMS)

    assert outcome.kubelet_failure is not None
    assert failure in outcome.kubelet_failure


async def test_grpc_error_becomes_plugin_call_error(
    kubelet: KubeletSimulator, plugins: StartPlugin
) -> None:
    """A gRPC error status from the plugin is raised with its code and details."""
    await plugins(abort_with=grpc.StatusCode.UNAVAILABLE)
    registered = await kubelet.wait_for_driver(DRIVER, timeout=5.0)

    with pytest.raises(PluginCallError) as excinfo:
        await registered.prepare(CLAIMS)

    assert excinfo.value.code == grpc.StatusCode.UNAVAILABLE
    assert excinfo.value.details == "driver not ready"
    assert excinfo.value.method == f"/{DRA_SERVICES['v1']}/NodePrepareResources"


async def test_raw_calls_reach_the_plugin_unchanged(
    kubelet: KubeletSimulator, plugins: StartPlugin
) -> None:
    """Hand-built messages and raw bytes go to the exact method path given."""
    plugin = await plugins()
    registered = await kubelet.wait_for_driver(DRIVER, timeout=5.0)
    request = dra_v1beta1.NodePrepareResourcesRequest(
        claims=[dra_v1beta1.Claim(namespace="", name="", uid="")]
    )

    typed = await registered.prepare_raw(request)
    raw = await registered.call_raw(
        f"/{DRA_SERVICES['v1']}/NodeUnprepareResources", request.SerializeToString()
    )

    assert list(typed.claims) == [""]
    assert dra_v1.NodeUnprepareResourcesResponse.FromString(raw).claims[""].error == ""
    assert plugin.prepared == [("v1beta1", [ClaimRef("", "", "")])]
    assert plugin.unprepared == [("v1", [ClaimRef("", "", "")])]


async def test_watch_health_converts_stream_messages(
    kubelet: KubeletSimulator, plugins: StartPlugin
) -> None:
    """The health stream's messages arrive as dataclasses with health names as strings."""
    plugin = await plugins()
    registered = await kubelet.wait_for_driver(DRIVER, timeout=5.0)

    async with registered.watch_health() as stream:
        update = await anext(stream)

    assert [(d.device_name, d.health) for d in update.devices] == [
        ("gpu-0", "Healthy"),
        ("gpu-1", "Unhealthy"),
        ("gpu-2", "Unknown"),
    ]
    gpu1 = update.devices[1]
    assert (gpu1.pool_name, gpu1.last_updated_time) == ("node-1", 1_700_000_001)
    assert (gpu1.health_check_timeout_seconds, gpu1.message) == (60, "ECC errors")
    assert plugin.methods[-1] == f"/{HEALTH_SERVICE}/NodeWatchResources"
    assert [u async for u in stream] == []


async def test_reregister_all_registers_existing_sockets_again(
    kubelet: KubeletSimulator, plugins: StartPlugin
) -> None:
    """A simulated kubelet restart calls GetInfo and NotifyRegistrationStatus again."""
    plugin = await plugins()
    old = await kubelet.wait_for_driver(DRIVER, timeout=5.0)

    again = await kubelet.reregister_all()

    assert [p.driver_name for p in again] == [DRIVER]
    assert plugin.info_calls == 2
    assert [s.plugin_registered for s in plugin.statuses] == [True, True]
    assert old.closed
    assert await kubelet.wait_for_driver(DRIVER, timeout=5.0) is again[0]
    with pytest.raises(PluginNotRegisteredError):
        await old.prepare(CLAIMS)
    assert (await again[0].prepare(CLAIMS)).kubelet_failure is None


async def test_recreated_socket_is_registered_as_a_new_instance(
    kubelet: KubeletSimulator, plugins: StartPlugin
) -> None:
    """A plugin restart that re-creates its sockets replaces the old registration."""
    first = await plugins()
    old = await kubelet.wait_for_driver(DRIVER, timeout=5.0)
    await first.stop()
    second = await plugins()

    new = await kubelet.wait_for_driver(DRIVER, timeout=5.0)

    assert new is not old
    assert new.sequence > old.sequence
    assert old.closed
    assert second.statuses == [RegistrationStatusRecord(plugin_registered=True, error="")]
    assert kubelet.plugins == [new]


async def test_method_path_constants_match_the_generated_descriptors() -> None:
    """The service names the simulator reports are the ones protoc put in the descriptors."""
    assert DRA_SERVICES["v1"] == dra_v1.DESCRIPTOR.services_by_name["DRAPlugin"].full_name
    assert DRA_SERVICES["v1beta1"] == dra_v1beta1.DESCRIPTOR.services_by_name["DRAPlugin"].full_name
    health = health_pb.DESCRIPTOR.services_by_name["DRAResourceHealth"]
    assert health.full_name == HEALTH_SERVICE
    assert reg_pb.DESCRIPTOR.services_by_name["Registration"].full_name == (
        "pluginregistration.Registration"
    )
