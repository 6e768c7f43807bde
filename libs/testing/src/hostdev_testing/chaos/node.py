"""The campaign's node: its own nats-server, the API emulator, the acceptance host, the five
services as processes and both kubelet simulators, with a supervisor that restarts whatever
dies (as the kubelet restarts a crashed DaemonSet pod)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient

from hostdev_events import killpoints
from hostdev_testing.apiserver import ApiServer
from hostdev_testing.cluster import Cluster
from hostdev_testing.fakesysfs import SampleHost, acceptance_host
from hostdev_testing.kubelet import KubeletSimulator
from hostdev_testing.kubelet_dp import DevicePluginKubelet
from hostdev_testing.nats import NatsServer
from hostdev_testing.schemas import SchemasMissing, schemas_dir
from hostdev_testing.services import ALL, NodeConfig, Services

DRIVER = "hostdev.k8s.io"
NODE = "chaos-node"
NATS_SERVER = "nats-server"
PROCESSES = (*ALL, NATS_SERVER)
CALL_TIMEOUT = 2.0  # the kubelet simulators' gRPC deadline per call
STOP_TIMEOUT = 15.0  # a SIGTERMed service that has not ended by then is SIGKILLed
# How long a service (or all five together) may take to report ready: a start on this
# 2-core machine at a load average of 20 took well over 30 s.
READY_TIMEOUT = 120.0

# Resource names of the device-plugin half of the workload.
DP_VGPU = "hostdev.k8s.io/gvtg-v5-8"
DP_USB = "hostdev.k8s.io/receiver"

DEVICES: dict[str, Any] = {
    # The NVMe shares its IOMMU group with the AHCI controller: opt in.
    "pci": [{"vendor": "144d", "device": "a808", "wholeGroup": True}],
    "sriov": [{"pf": "0000:3b:00.0"}],
    "mdev": [{"parent": "0000:00:02.0"}],
    "usb": [{"vendor": "0781"}, {"vendor": "046d"}],
    "hostPaths": [{"path": "/dev/kvm", "name": "kvm", "shared": True}],
    "resources": [
        {"name": DP_VGPU, "devices": ["mdev-0000-00-02-0-i915-gvtg-v5-8-*"]},
        {"name": DP_USB, "devices": ["usb-046d-*"]},
    ],
}


class ChaosSetupError(RuntimeError):
    """The node could not be brought up (or back up); carries the logs that say why."""


@dataclass(slots=True)
class Restarts:
    """What the supervisor restarted, per process."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, process: str) -> None:
        self.counts[process] = self.counts.get(process, 0) + 1


@dataclass(slots=True)
class ChaosNode:
    """Everything one kill point runs against; `up` is set while every process serves."""

    workdir: Path
    sample: SampleHost
    config: NodeConfig
    nats_server: NatsServer
    nats_port: int
    nc: NatsClient
    services: Services
    cluster: Cluster
    kubelet: KubeletSimulator
    dp_kubelet: DevicePluginKubelet
    up: asyncio.Event = field(default_factory=asyncio.Event)
    restarts: Restarts = field(default_factory=Restarts)
    # Graceful stops (SIGTERM) that did not end in time and were SIGKILLed, per service.
    hung_stops: Restarts = field(default_factory=Restarts)
    _watchers: list[asyncio.Task[None]] = field(default_factory=list)
    # Set when a supervised process could not be brought back: whoever waits for the node
    # to be up is told why, rather than waiting for ever.
    broken: BaseException | None = None
    _broken: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_up(self) -> None:
        """Until every process serves again; ChaosSetupError when one could not be restarted."""
        if self.broken is None and not self.up.is_set():
            up = asyncio.create_task(self.up.wait())
            broken = asyncio.create_task(self._broken.wait())
            await asyncio.wait((up, broken), return_when=asyncio.FIRST_COMPLETED)
            up.cancel()
            broken.cancel()
        if self.broken is not None:
            raise ChaosSetupError(f"the node did not come back: {self.broken}")

    # -- processes -------------------------------------------------------------------------

    async def start_service(self, name: str, env: dict[str, str] | None = None) -> bool:
        """(Re)start one service with `env` on top of the node's settings and wait until it
        is ready; False when it died first (killed at a start-up point)."""
        await self.stop_service(name)
        self.services.per_service_env[name] = env or {}
        await self.services._spawn(name)
        proc = self.services.running[name].proc
        assert proc is not None
        ready = asyncio.create_task(self.services._wait_ready({name}, READY_TIMEOUT))
        died = asyncio.create_task(proc.wait())
        done, _ = await asyncio.wait((ready, died), return_when=asyncio.FIRST_COMPLETED)
        if ready in done and ready.exception() is None:
            died.cancel()
            return True
        ready.cancel()
        if died in done:
            return False
        raise ChaosSetupError(f"{name} did not start:\n{self.services.log(name)}")

    async def stop_service(self, name: str) -> None:
        """Stop a service gracefully (SIGTERM); one that does not end within the stop
        timeout is SIGKILLed (a fault the campaign proves survivable anyway) and counted,
        so a hanging stop shows in the figures instead of ending the campaign."""
        running = self.services.running.get(name)
        proc = running.proc if running is not None else None
        try:
            await self.services.stop(name, timeout=STOP_TIMEOUT)
        except TimeoutError:
            assert proc is not None
            proc.kill()
            await proc.wait()
            self.hung_stops.add(name)

    async def stop_all(self) -> None:
        """Stop every service, the gateway first (it faces the kubelet)."""
        for name in sorted(self.services.running, key=lambda n: n != "gateway"):
            await self.stop_service(name)

    def pid(self, name: str) -> int:
        """The process ID of a running service or of nats-server."""
        if name == NATS_SERVER:
            assert self.nats_server.proc is not None
            return self.nats_server.proc.pid
        proc = self.services.running[name].proc
        assert proc is not None
        return proc.pid

    def repaired(self) -> None:
        """Forget a failed restart once the node has been cleared and started afresh."""
        self.broken = None
        self._broken.clear()

    def supervise(self, name: str) -> None:
        """Restart `name` (without the campaign's variables) as soon as it dies."""
        self._watchers.append(asyncio.create_task(self._watched(name), name=f"watch-{name}"))

    async def _watched(self, name: str) -> None:
        try:
            await self._watch(name)
        except Exception as err:
            self.broken = err
            self._broken.set()

    async def _watch(self, name: str) -> None:
        if name == NATS_SERVER:
            proc = self.nats_server.proc
            assert proc is not None
            await _exited(proc.pid)
            proc.wait()
            self.up.clear()
            self.nats_server.proc = None
            await asyncio.to_thread(self.nats_server.start, 30.0, self.nats_port)
        else:
            running = self.services.running[name].proc
            assert running is not None
            await running.wait()
            self.up.clear()
            self.services.running.pop(name, None)
            if not await self.start_service(name):
                raise ChaosSetupError(f"{name} died again at start:\n{self.services.log(name)}")
        self.restarts.add(name)
        self.up.set()

    async def settle(self) -> None:
        """Stop supervising; processes that did not die keep running."""
        for task in self._watchers:
            task.cancel()
        for task in self._watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._watchers.clear()

    def alive(self, name: str) -> bool:
        """Whether a process runs (it may have been killed and not yet restarted)."""
        if name == NATS_SERVER:
            return self.nats_server.proc is not None and self.nats_server.proc.poll() is None
        running = self.services.running.get(name)
        return running is not None and running.proc is not None and running.proc.returncode is None

    def count_file(self, name: str) -> Path:
        """Where a counting run's process appends its events."""
        return self.workdir / "counts" / f"{name}.events"

    def counting_env(self, name: str) -> dict[str, str]:
        """The variables of a fault-free counting run."""
        path = self.count_file(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        return {killpoints.COUNT_FILE: str(path)}


async def _exited(pid: int) -> None:
    """Wait until a child process ends, woken by the kernel (a pidfd), not by polling."""
    loop = asyncio.get_running_loop()
    fd = os.pidfd_open(pid)
    ended = asyncio.Event()
    loop.add_reader(fd, ended.set)
    try:
        await ended.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def _expected(err: Exception) -> None:
    """nats-server is killed on purpose: its connection errors are the point, not news."""


def _schemas() -> Path | None:
    try:
        return schemas_dir()
    except SchemasMissing:
        return None  # the emulator checks less without them; the campaign still runs


@contextlib.asynccontextmanager
async def chaos_node(workdir: Path) -> AsyncIterator[ChaosNode]:
    """Bring the whole node up; on exit stop every process and socket it started."""
    root = workdir / "root"
    sample = acceptance_host(root)
    devices = workdir / "devices.yaml"
    devices.write_text(json.dumps(DEVICES))
    server = NatsServer(workdir / "nats")
    url = server.start()
    port = int(url.rsplit(":", 1)[1])
    try:
        async with ApiServer(schemas_dir=_schemas()) as api_url:
            config = NodeConfig(
                node=NODE,
                driver=DRIVER,
                nats_url=url,
                api_url=api_url,
                root=root,
                workdir=workdir / "work",
                devices_config=devices,
            )
            config.workdir.mkdir(parents=True, exist_ok=True)
            config.registry_dir.mkdir(parents=True, exist_ok=True)
            config.pod_resources_socket.parent.mkdir(parents=True, exist_ok=True)
            # The harness's own connection follows nats-server through its restarts.
            nc = await nats.connect(
                url, max_reconnect_attempts=-1, reconnect_time_wait=0.1, error_cb=_expected
            )
            services = Services(config, nc)
            await services._listen()
            kubelet = KubeletSimulator(config.registry_dir)
            dp_kubelet = DevicePluginKubelet(config.device_plugins_dir, call_timeout=CALL_TIMEOUT)
            try:
                await dp_kubelet.start()
                await dp_kubelet.serve_pod_resources(config.pod_resources_socket)
                async with Cluster(api_url, NODE, DRIVER) as cluster:
                    await cluster.create_node()
                    await cluster.create_namespace("chaos")
                    node = ChaosNode(
                        workdir=workdir,
                        sample=sample,
                        config=config,
                        nats_server=server,
                        nats_port=port,
                        nc=nc,
                        services=services,
                        cluster=cluster,
                        kubelet=kubelet,
                        dp_kubelet=dp_kubelet,
                    )
                    try:
                        yield node
                    finally:
                        await node.settle()
                        await node.stop_all()
            finally:
                await kubelet.close()
                await dp_kubelet.close()
                await nc.close()
    finally:
        server.stop()
        _remove_sockets(workdir)


def _remove_sockets(workdir: Path) -> None:
    """Unix sockets a killed gateway could not remove: the harness leaves none behind."""
    for dirpath, _, files in os.walk(workdir):
        for name in files:
            path = Path(dirpath) / name
            if path.is_socket():
                path.unlink(missing_ok=True)
