"""Run the five services for one simulated node: as asyncio tasks or as real processes."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import nats
from nats.aio.client import Client as NatsClient

from hostdev_bus import NatsBus
from hostdev_events import subjects
from hostdev_events.dp import ReconcileAllocations, Reconciled
from hostdev_events.service import ServiceReady
from hostdev_runtime.clock import Clock

if TYPE_CHECKING:
    from hostdev_runtime.runner import Route, ServiceContext

MODULES = {
    "gateway": "hostdev_gateway",
    "discovery": "hostdev_discovery",
    "allocator": "hostdev_allocator",
    "preparer": "hostdev_preparer",
    "cdi-writer": "hostdev_cdi_writer",
}
ALL = tuple(MODULES)


class ServiceDidNotStop(AssertionError):
    """A service run as a task went on after its stop; the message says where each task waits."""


def task_stacks() -> str:
    """Every unfinished task of the loop with the frames it waits in, innermost last."""
    lines = []
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        if task.done():
            continue
        lines.append(f"{task.get_name()}:")
        for frame in task.get_stack():
            code = frame.f_code
            lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything the services of one simulated node need to know."""

    node: str
    driver: str
    nats_url: str
    api_url: str
    root: Path
    workdir: Path
    devices_config: Path
    scan_seconds: float = 3600.0  # tests that need rescans set a short period
    debounce_seconds: float = 0.0
    gone_seconds: float = 0.0
    taint_unhealthy: bool = False
    pod_resources_seconds: float = 3600.0

    @property
    def cdi_root(self) -> Path:
        """The CDI spec directory."""
        return self.workdir / "cdi"

    @property
    def plugins_dir(self) -> Path:
        """The kubelet plugin data directory."""
        return self.workdir / "plugins"

    @property
    def registry_dir(self) -> Path:
        """The kubelet plugin registration directory."""
        return self.workdir / "plugins_registry"

    @property
    def device_plugins_dir(self) -> Path:
        """The kubelet device plugin directory (kubelet.sock and plugin sockets)."""
        return self.workdir / "device-plugins"

    @property
    def pod_resources_socket(self) -> Path:
        """The kubelet pod-resources socket."""
        return self.workdir / "pod-resources" / "kubelet.sock"

    def env(self) -> dict[str, str]:
        """The environment variables the services read."""
        return {
            "NODE_NAME": self.node,
            "HOSTDEV_NATS_URL": self.nats_url,
            "HOSTDEV_DRIVER_NAME": self.driver,
            "HOSTDEV_KUBE_API_URL": self.api_url,
            "HOSTDEV_HOST_ROOT": str(self.root),
            "HOSTDEV_DEVICES_CONFIG": str(self.devices_config),
            "HOSTDEV_CDI_ROOT": str(self.cdi_root),
            "HOSTDEV_PLUGINS_DIR": str(self.plugins_dir),
            "HOSTDEV_REGISTRY_DIR": str(self.registry_dir),
            "HOSTDEV_DEVICE_PLUGINS_DIR": str(self.device_plugins_dir),
            "HOSTDEV_POD_RESOURCES_SOCKET": str(self.pod_resources_socket),
            "HOSTDEV_POD_RESOURCES_SECONDS": str(self.pod_resources_seconds),
            "HOSTDEV_SCAN_SECONDS": str(self.scan_seconds),
            "HOSTDEV_DEBOUNCE_SECONDS": str(self.debounce_seconds),
            "HOSTDEV_GONE_SECONDS": str(self.gone_seconds),
            "HOSTDEV_TAINT_UNHEALTHY": str(self.taint_unhealthy).lower(),
            "HOSTDEV_LOG_LEVEL": "WARNING",
        }


@dataclass(slots=True)
class _Running:
    task: asyncio.Task[None] | None = None
    stopping: asyncio.Event | None = None
    proc: asyncio.subprocess.Process | None = None


@dataclass(slots=True)
class Services:
    """Starts, stops and kills services of one node; `start` returns once each is ready."""

    config: NodeConfig
    nc: NatsClient
    running: dict[str, _Running] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    per_service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    # The preparer's clock when it runs as a task (a ManualClock moves grace periods along).
    preparer_clock: Clock | None = None
    # The routes each service started as a task subscribed, for tests that walk every subject.
    routes: dict[str, tuple[Route[Any], ...]] = field(default_factory=dict)
    _ready: asyncio.Queue[ServiceReady] = field(default_factory=asyncio.Queue)

    def env(self, service: str = "") -> dict[str, str]:
        """What a service gets: the node's settings and the test's extras (for it alone too)."""
        return {**self.config.env(), **self.extra_env, **self.per_service_env.get(service, {})}

    async def reconcile_pod_resources(self, timeout: float = 10.0) -> dict[str, tuple[str, ...]]:
        """Ask the gateway to compare device-plugin allocations with pod-resources now."""
        bus = NatsBus(self.nc)
        reply = await bus.request(
            subjects.dp_reconcile(self.config.node), ReconcileAllocations(), Reconciled, timeout
        )
        return reply.released

    async def _listen(self) -> None:
        decoder = msgspec.json.Decoder(ServiceReady)

        async def on_ready(msg: Any) -> None:
            try:
                ready = decoder.decode(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return  # not a service's announcement (fuzz tests publish garbage here)
            await self._ready.put(ready)

        await self.nc.subscribe(subjects.service_ready(self.config.node), cb=on_ready)
        await self.nc.flush()

    async def _wait_ready(self, names: set[str], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while names:
                names.discard((await self._ready.get()).service)

    async def start(self, *names: str, processes: bool = False, timeout: float = 20.0) -> None:
        """Start services (all when none named) and wait until each reports ready."""
        wanted = names or ALL
        for name in wanted:
            if processes:
                await self._spawn(name)
            else:
                self._run_task(name)
        await self._wait_ready(set(wanted), timeout)

    async def start_instance(
        self, name: str, key: str, env: dict[str, str], timeout: float = 20.0
    ) -> None:
        """Start one more instance of a service as a task (a rolling update runs two), kept
        under `key` for stop(key); returns once it reports ready."""
        self._run_task(name, key=key, env=env)
        await self._wait_ready({name}, timeout)

    def _run_task(self, name: str, *, key: str = "", env: dict[str, str] | None = None) -> None:
        from hostdev_runtime.runner import run_service
        from hostdev_runtime.settings import load_settings

        module = MODULES[name]
        settings_module = importlib.import_module(f"{module}.settings")
        settings = load_settings(settings_module.Settings, {**self.env(name), **(env or {})})
        if name == "preparer":
            from hostdev_testing.fake_preparer import faked

            built = faked(settings, self.preparer_clock)
        else:
            built = importlib.import_module(f"{module}.app").app(settings)
        stopping = asyncio.Event()

        async def recorded(ctx: ServiceContext) -> Sequence[Route[Any]]:
            routes = await built(ctx)
            self.routes[name] = tuple(routes)
            return routes

        task = asyncio.create_task(run_service(name, settings, recorded, stopping), name=name)
        self.running[key or name] = _Running(task=task, stopping=stopping)

    async def _spawn(self, name: str) -> None:
        log = (self.config.workdir / f"{name}.log").open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env |= self.env(name)
        # The preparer runs with the fake kernel: the fake tree has no kernel behind it.
        module = "hostdev_testing.fake_preparer" if name == "preparer" else MODULES[name]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, env=env, stdout=log, stderr=log
        )
        log.close()
        self.running[name] = _Running(proc=proc)

    async def stop(self, name: str, timeout: float = 15.0) -> None:
        """Stop a service gracefully (SIGTERM for a process)."""
        running = self.running.pop(name, None)
        if running is None:
            return
        if running.proc is not None:
            if running.proc.returncode is None:
                running.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(timeout):
                await running.proc.wait()
        elif running.task is not None and running.stopping is not None:
            running.stopping.set()
            done, _ = await asyncio.wait({running.task}, timeout=timeout)
            if not done:
                # Every task a service starts must end when it stops (hostdev_runtime.runner
                # sees to it); one that does not is a bug to see, not to wait out. Say where
                # every task waits, end this one so it does not outlive the test, and fail.
                stacks = task_stacks()
                running.task.cancel()
                await asyncio.wait({running.task}, timeout=5.0)
                raise ServiceDidNotStop(f"{name} did not stop within {timeout}s; tasks:\n{stacks}")

    async def kill(self, name: str) -> None:
        """SIGKILL a service process: no cleanup, as a crash or OOM kill."""
        running = self.running.pop(name)
        if running.proc is None:
            raise ValueError(f"{name} runs as a task; only processes can be killed")
        running.proc.kill()
        await running.proc.wait()

    async def stop_all(self, timeout: float = 15.0) -> None:
        """Stop everything still running, gateway first (it faces the kubelet); a service
        that does not stop fails the caller once the others have stopped too."""
        order = sorted(self.running, key=lambda n: not n.startswith("gateway"))
        failures: list[ServiceDidNotStop] = []
        for name in order:
            try:
                await self.stop(name, timeout)
            except ServiceDidNotStop as err:
                failures.append(err)
        if failures:
            raise ServiceDidNotStop("\n\n".join(str(f) for f in failures))

    def log(self, name: str) -> str:
        """A process's captured output, for failure messages."""
        path = self.config.workdir / f"{name}.log"
        return path.read_text() if path.exists() else ""


@contextlib.asynccontextmanager
async def running_services(config: NodeConfig) -> AsyncIterator[Services]:
    """A Services handle for `config`; everything it started is stopped on exit."""
    config.workdir.mkdir(parents=True, exist_ok=True)
    nc = await nats.connect(config.nats_url)
    services = Services(config, nc)
    await services._listen()
    try:
        yield services
    finally:
        try:
            await services.stop_all()
        finally:
            await nc.close()
