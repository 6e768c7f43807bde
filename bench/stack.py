"""The simulated node shared by the sections: nats-server, the API emulator, a fake host, claims."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostdev_testing.cluster import Allocated, Claim, Cluster
from hostdev_testing.fakehost import FakeHost
from hostdev_testing.schemas import SchemasMissing, schemas_dir

DRIVER = "hostdev.k8s.io"
NODE = "bench-node"
NAMESPACE = "bench"

# One exclusive device per concurrent caller, so callers never refuse each other, and a
# few shareable ones that many claims hold at once (as /dev/kvm is in production).
EXCLUSIVE_DEVICES = 64
SHARED_DEVICES = 4
HOST_PATHS: tuple[dict[str, Any], ...] = (
    {"path": "/dev/bench/x*"},
    {"path": "/dev/bench/s*", "shared": True},
)


def exclusive_device(caller: int) -> str:
    """The inventory name of caller `caller`'s own exclusive device."""
    return f"dev-bench-x{caller % EXCLUSIVE_DEVICES:03d}"


def shared_device(caller: int) -> str:
    """The inventory name of the shareable device caller `caller` uses."""
    return f"dev-bench-s{caller % SHARED_DEVICES}"


def bench_host(root: Path) -> FakeHost:
    """A host with the exclusive and shareable device nodes of HOST_PATHS."""
    host = FakeHost(root)
    for i in range(EXCLUSIVE_DEVICES):
        host.device_node(f"/dev/bench/x{i:03d}")
    for k in range(SHARED_DEVICES):
        host.device_node(f"/dev/bench/s{k}")
    return host


@dataclass(frozen=True, slots=True)
class Work:
    """One prepare → unprepare cycle: the claim and whether its device is shared."""

    claim: Claim
    kind: str  # "exclusive" or "shared"


def optional_schemas() -> Path | None:
    """The official schemas when present; the emulator checks less without them."""
    try:
        return schemas_dir()
    except SchemasMissing as err:
        print(f"note: {err}; the API emulator will not check objects against them")
        return None


class ApiProcess:
    """The API emulator as its own process (`python -m hostdev_testing.apiserver`).

    In a separate process it cannot be slowed down by the benchmark's own event loop (the
    kubelet side with up to 64 callers), nor slow it down; a real API server is remote too.
    """

    def __init__(self, workdir: Path, schemas: Path | None) -> None:
        self.workdir = workdir
        self.schemas = schemas
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self, timeout: float = 30.0) -> str:
        self.workdir.mkdir(parents=True, exist_ok=True)
        url_file = self.workdir / "api.url"
        url_file.unlink(missing_ok=True)
        args = ["-m", "hostdev_testing.apiserver", "--url-file", str(url_file)]
        if self.schemas is not None:
            args += ["--schemas-dir", str(self.schemas)]
        log = (self.workdir / "api.log").open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if url_file.exists():
                self.url = url_file.read_text().strip()
                return self.url
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.02)
        await self.stop()
        raise RuntimeError(f"API emulator did not start: {(self.workdir / 'api.log').read_text()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.proc = None


async def create_claims(
    cluster: Cluster, tag: str, callers: int, cycles: int, *, parallel: int = 8
) -> list[list[Work]]:
    """Fresh allocated claims, `cycles` per caller: even cycles the caller's exclusive device,
    odd cycles a shared one. Every cycle gets its own claim (a new UID), as every pod does."""
    plan = [
        (i, c, exclusive_device(i) if c % 2 == 0 else shared_device(i))
        for i in range(callers)
        for c in range(cycles)
    ]
    made: dict[tuple[int, int], Work] = {}
    limit = asyncio.Semaphore(parallel)

    async def one(i: int, c: int, device: str) -> None:
        async with limit:
            claim = await cluster.allocated_claim(
                NAMESPACE, f"{tag}-{i}-{c}", [Allocated("dev", device)]
            )
        made[(i, c)] = Work(claim, "exclusive" if c % 2 == 0 else "shared")

    await asyncio.gather(*(one(i, c, d) for i, c, d in plan))
    return [[made[(i, c)] for c in range(cycles)] for i in range(callers)]


def flatten(work: Sequence[Sequence[Work]]) -> list[Work]:
    return [w for items in work for w in items]


def cache_bytecode(prefix: Path) -> None:
    """Let every process started from now on keep its compiled bytecode under `prefix`.

    The image ships every module compiled (the Dockerfile's UV_COMPILE_BYTECODE=1). With
    PYTHONDONTWRITEBYTECODE set in the shell, and no bytecode next to the sources, each
    service compiled every module it imports at every start, about half of its import
    time: the cold starts measured the compiler. Each run compiles into its own directory.
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(prefix)


def workdir_base() -> Path:
    """tmpfs when there is one: production's CDI directory (/var/run/cdi) is on tmpfs, and
    a disk under the spec files would add its fsync time to every prepare."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    return Path("/tmp")


def filesystem_type(path: Path) -> str:
    """The mount type holding `path`, from /proc/mounts (longest matching mount point)."""
    best, kind = "", "unknown"
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    target = str(path.resolve())
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1]
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best):
            best, kind = mount, parts[2]
    return kind
