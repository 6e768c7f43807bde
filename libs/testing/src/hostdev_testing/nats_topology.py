"""nats-server topologies for fault tests: a JetStream cluster, a hub with a node's leaf, and
one server that restarts on the same port and store. Each server can be SIGKILLed and
started again with the same identity, as a crashed pod comes back."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors
from nats.js.api import StreamConfig

from hostdev_testing.nats import NatsServerError, nats_server_executable


def free_port() -> int:
    """A loopback port nobody listens on now (the kernel's pick, released at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ConfiguredServer:
    """One nats-server run from a config file; its ports stay fixed across restarts."""

    name: str
    workdir: Path
    config: str  # the config file body; `port` and the store dir are set by start()
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def start(self, timeout: float = 15.0) -> str:
        """Start (or start again) and wait until it listens for clients."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for old in self.workdir.glob("*.ports"):
            old.unlink()
        conf = self.workdir / "server.conf"
        conf.write_text(
            f"server_name: {self.name}\nhost: 127.0.0.1\nport: {self.port}\n"
            f"ports_file_dir: {json.dumps(str(self.workdir))}\n{self.config}\n"
        )
        args = [str(nats_server_executable()), "-c", str(conf), "-l", str(self.log_path)]
        with (self.workdir / "stderr.log").open("wb") as stderr:
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.stat().st_size > 0 for p in self.workdir.glob("*.ports")):
                return self.url
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)  # waiting for another process's file; nothing to await
        self.stop()
        logs = [self.workdir / "stderr.log", self.log_path]
        log = "".join(p.read_text() for p in logs if p.exists())
        raise NatsServerError(f"{self.name} did not start within {timeout}s:\n{log[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients, routes or leaf nodes, as a crash or OOM kill."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        """Terminate and wait."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def _store(workdir: Path) -> str:
    return json.dumps(str(workdir / "js"))


def single(workdir: Path) -> ConfiguredServer:
    """One JetStream server, as the per-node leaf runs when no hub is configured."""
    return ConfiguredServer("single", workdir, f"jetstream {{ store_dir: {_store(workdir)} }}")


def cluster(workdir: Path, size: int = 3) -> list[ConfiguredServer]:
    """A JetStream cluster of `size` servers routed to each other (k8s/base/nats.yaml's hub)."""
    cluster_ports = [free_port() for _ in range(size)]
    routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in cluster_ports)
    servers = []
    for index, cluster_port in enumerate(cluster_ports):
        home = workdir / f"n{index}"
        config = (
            f"jetstream {{ store_dir: {_store(home)} }}\n"
            f"cluster {{ name: hostdev-hub, host: 127.0.0.1, port: {cluster_port},"
            f" routes: [{routes}] }}"
        )
        servers.append(ConfiguredServer(f"n{index}", home, config))
    return servers


def hub_and_leaf(workdir: Path, leaf_domain: str) -> tuple[ConfiguredServer, ConfiguredServer]:
    """A hub (domain `hub`) and a node's leaf with its own JetStream domain connected to it,
    as k8s/base/nats.yaml deploys them (one hub server here: the hub's own faults are the
    cluster test's)."""
    leaf_port = free_port()
    hub_home, leaf_home = workdir / "hub", workdir / "leaf"
    hub = ConfiguredServer(
        "hub",
        hub_home,
        f"jetstream {{ domain: hub, store_dir: {_store(hub_home)} }}\n"
        f"leafnodes {{ host: 127.0.0.1, port: {leaf_port} }}",
    )
    leaf = ConfiguredServer(
        "leaf",
        leaf_home,
        f"jetstream {{ domain: {leaf_domain}, store_dir: {_store(leaf_home)} }}\n"
        f"leafnodes {{ reconnect: '200ms', remotes: [ {{ url: nats-leaf://127.0.0.1:{leaf_port} }} ] }}",
    )
    return hub, leaf


async def eventually(
    what: str,
    probe: Callable[[], Awaitable[bool]],
    timeout: float,
    step: float = 0.05,
) -> None:
    """Wait until `probe()` holds, polling another process's state (a server forming its
    cluster has nothing to await on); fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await probe():
            return
        await asyncio.sleep(step)
    raise TimeoutError(f"{what} within {timeout}s")


async def jetstream_ready(url: str, replicas: int = 1, timeout: float = 30.0) -> None:
    """Wait until JetStream at `url` answers, and (with `replicas` > 1) until a stream of
    that many replicas gets a leader: a cluster then places new buckets at once."""
    nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    try:
        js = nc.jetstream(timeout=2.0)

        async def answers() -> bool:
            try:
                await js.account_info()
                if replicas > 1:
                    info = await js.add_stream(
                        StreamConfig(name="warm-up", subjects=["warm-up"], num_replicas=replicas)
                    )
                    return info.cluster is not None and info.cluster.leader is not None
            except (nats.errors.Error, TimeoutError):
                return False
            return True

        await eventually(f"JetStream at {url} did not answer", answers, timeout, step=0.2)
        if replicas > 1:
            await js.delete_stream("warm-up")
    finally:
        await nc.close()
