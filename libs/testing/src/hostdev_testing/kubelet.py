"""A DRA kubelet simulator: plugin discovery, registration and DRA calls over unix sockets."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, NoReturn

import grpc
import grpc.aio

from hostdev_kubelet_pb.pluginregistration.v1 import api_pb2 as reg_pb
from hostdev_kubelet_pb.pluginregistration.v1 import api_pb2_grpc as reg_grpc
from hostdev_testing.kubelet_dra import HealthStream, RegisteredPlugin
from hostdev_testing.kubelet_types import (
    DRA_CALL_TIMEOUT,
    DRA_SERVICES,
    HEALTH_SERVICE,
    HEALTH_TOKEN,
    SERVICE_TOKENS,
    ClaimLike,
    ClaimRef,
    DeviceHealthReport,
    DRAVersion,
    DuplicateEndpointError,
    HealthState,
    HealthUpdate,
    PluginCallError,
    PluginInfoRecord,
    PluginNotRegisteredError,
    PreparedClaim,
    PreparedDevice,
    PrepareOutcome,
    RegistrationError,
    RegistrationRejectedError,
    RegistrationStatusRecord,
    RegistrationTimeoutError,
    UnpreparedClaim,
    UnprepareOutcome,
    UnsupportedPluginTypeError,
    UnsupportedVersionsError,
)

__all__ = [
    "DRA_CALL_TIMEOUT",
    "DRA_SERVICES",
    "HEALTH_SERVICE",
    "HEALTH_TOKEN",
    "SERVICE_TOKENS",
    "ClaimLike",
    "ClaimRef",
    "DRAVersion",
    "DeviceHealthReport",
    "DuplicateEndpointError",
    "HealthState",
    "HealthStream",
    "HealthUpdate",
    "KubeletSimulator",
    "PluginCallError",
    "PluginInfoRecord",
    "PluginNotRegisteredError",
    "PrepareOutcome",
    "PreparedClaim",
    "PreparedDevice",
    "RegisteredPlugin",
    "RegistrationError",
    "RegistrationRejectedError",
    "RegistrationStatusRecord",
    "RegistrationTimeoutError",
    "UnprepareOutcome",
    "UnpreparedClaim",
    "UnsupportedPluginTypeError",
    "UnsupportedVersionsError",
    "choose_version",
]

# Kubelet deadlines for the registration calls (section 0.4 of the protocol reference).
# wait_for_driver and reregister_all keep a `timeout` parameter (exempt from ASYNC109)
# because running out of time is an outcome they report, with what was still pending.
GET_INFO_TIMEOUT: Final = 1.0
NOTIFY_TIMEOUT: Final = 5.0
DRA_PLUGIN_TYPE: Final = "DRAPlugin"

_log = logging.getLogger(__name__)

# Cap for the per-socket retry backoff after a failed GetInfo; the kubelet's is longer, but
# tests should not wait for it.
_MAX_BACKOFF: Final = 1.0


def choose_version(
    supported_versions: Sequence[str], known: Sequence[DRAVersion] = ("v1", "v1beta1")
) -> DRAVersion | None:
    """First token in the plugin's order that the kubelet knows; unknown tokens are skipped."""
    for token in supported_versions:
        version = SERVICE_TOKENS.get(token)
        if version is not None and version in known:
            return version
    return None


@dataclass
class _SocketState:
    """The simulator's desired-state entry for one socket instance."""

    identity: tuple[int, int]
    failures: int = 0
    next_attempt: float = 0.0
    last_error: str = ""
    # Registered or rejected: this socket instance is not tried again.
    settled: bool = False


def _socket_identity(st: os.stat_result) -> tuple[int, int]:
    # A socket removed and bound again at the same path gets a new inode or ctime, which is
    # how polling tells a re-created socket from an old one.
    return (st.st_ino, st.st_ctime_ns)


class KubeletSimulator:
    """Discovers and registers DRA plugins in a plugins_registry directory like the kubelet.

    Discovery is by polling: every scan walks the directory tree, registers sockets that are
    new (or re-created) and deregisters those that disappeared. Scans run inside
    wait_for_driver and reregister_all, and in the background after start().

    Deliberate differences from the kubelet: a rejected socket is not retried (the kubelet
    would retry with backoff and notify the plugin again each time; re-create the socket or
    call reregister_all instead); GetInfo retries back off to at most 1 s; plugin types
    other than DRAPlugin are rejected; the health stream is opened only on watch_health().
    A socket re-created at the same path is noticed by its new inode/ctime, so on kernels
    with coarse timestamps a re-creation within one clock tick between two scans can be missed.
    """

    def __init__(
        self,
        plugins_registry_dir: Path,
        *,
        poll_interval: float = 0.02,
        kubelet_versions: Sequence[DRAVersion] = ("v1", "v1beta1"),
    ) -> None:
        self.registry_dir = Path(plugins_registry_dir).absolute()
        self.poll_interval = poll_interval
        # A 1.33 kubelet, for example, knows only ("v1beta1",).
        self.kubelet_versions = tuple(kubelet_versions)
        self.registry_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        self._sockets: dict[Path, _SocketState] = {}
        self._active: dict[Path, RegisteredPlugin] = {}
        self._latest: dict[str, RegisteredPlugin | RegistrationRejectedError] = {}
        self._history: list[RegisteredPlugin] = []
        self._rejections: list[RegistrationRejectedError] = []
        self._sequence = itertools.count(1)
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def plugins(self) -> list[RegisteredPlugin]:
        """Currently registered plugin instances, oldest first."""
        return sorted(self._active.values(), key=lambda p: p.sequence)

    @property
    def history(self) -> list[RegisteredPlugin]:
        """Every registration since this simulator (not kubelet) instance started, in order."""
        return list(self._history)

    @property
    def rejections(self) -> list[RegistrationRejectedError]:
        """Every rejected registration, in order."""
        return list(self._rejections)

    def pending_sockets(self) -> dict[Path, str]:
        """Sockets whose GetInfo keeps failing, with the last error; they are retried."""
        return {p: s.last_error for p, s in self._sockets.items() if not s.settled}

    def registered(self, driver_name: str) -> RegisteredPlugin | None:
        """The instance the kubelet would call for a driver: the most recently registered one."""
        candidates = [p for p in self._active.values() if p.driver_name == driver_name]
        return max(candidates, key=lambda p: p.sequence, default=None)

    async def start(self) -> None:
        """Keep scanning in the background, like the kubelet's plugin watcher."""
        self._check_open()
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(), name="kubelet-simulator-watch")

    async def __aenter__(self) -> KubeletSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def wait_for_driver(
        self,
        driver_name: str,
        timeout: float = 10.0,
    ) -> RegisteredPlugin:
        """Scan until driver_name is registered and return that instance.

        Raises the RegistrationRejectedError if the driver's latest registration attempt was
        rejected, and RegistrationTimeoutError if nothing conclusive happened in time.
        """
        self._check_open()
        deadline = time.monotonic() + timeout
        while True:
            await self.scan()
            outcome = self._latest.get(driver_name)
            if isinstance(outcome, RegistrationRejectedError):
                raise outcome
            if outcome is not None:
                return outcome
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RegistrationTimeoutError(
                    self.registry_dir,
                    f"DRA driver {driver_name} did not register within {timeout}s "
                    f"(registered: {sorted(self._latest)}; "
                    f"pending: {self._describe_pending()})",
                )
            await asyncio.sleep(min(self.poll_interval, remaining))

    async def reregister_all(
        self,
        timeout: float = 5.0,
    ) -> list[RegisteredPlugin]:
        """Simulate a kubelet restart: forget every plugin and register all sockets again.

        Returns the instances registered by the walk. Existing RegisteredPlugin objects are
        closed, as the old kubelet's connections die with it. Sockets still failing GetInfo
        when the timeout expires stay pending and are retried by later scans.
        """
        self._check_open()
        async with self._lock:
            old = list(self._active.values())
            self._active.clear()
            self._sockets.clear()
            self._latest.clear()
        for plugin in old:
            await plugin.close()
        before = len(self._history)
        deadline = time.monotonic() + timeout
        while True:
            await self.scan()
            if not self.pending_sockets() or time.monotonic() >= deadline:
                break
            await asyncio.sleep(self.poll_interval)
        return [p for p in self._history[before:] if not p.closed]

    async def scan(self) -> None:
        """Handle sockets created or removed since the last scan, like one reconcile pass."""
        self._check_open()
        async with self._lock:
            present = self._find_sockets()
            for path in list(self._sockets):
                if present.get(path) != self._sockets[path].identity:
                    await self._forget(path)
            for path, identity in sorted(present.items()):
                state = self._sockets.setdefault(path, _SocketState(identity))
                if not state.settled and time.monotonic() >= state.next_attempt:
                    await self._attempt(path, state)

    async def close(self) -> None:
        """Stop watching and close every connection."""
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        async with self._lock:
            plugins = list(self._active.values())
            self._active.clear()
        for plugin in plugins:
            await plugin.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("KubeletSimulator is closed")

    async def _watch(self) -> None:
        while True:
            try:
                await self.scan()
            except Exception:
                # The kubelet's watcher survives one bad pass; make the failure visible instead.
                _log.exception("kubelet simulator: scan of %s failed", self.registry_dir)
            await asyncio.sleep(self.poll_interval)

    def _find_sockets(self) -> dict[Path, tuple[int, int]]:
        found: dict[Path, tuple[int, int]] = {}
        # The kubelet watches subdirectories too.
        for dirpath, _dirnames, filenames in os.walk(self.registry_dir):
            for name in filenames:
                if name.startswith("."):
                    continue
                path = Path(dirpath) / name
                try:
                    st = path.lstat()
                except FileNotFoundError:
                    continue
                if stat.S_ISSOCK(st.st_mode):
                    found[path] = _socket_identity(st)
        return found

    async def _forget(self, path: Path) -> None:
        """Deregister the instance behind a removed (or re-created) socket."""
        del self._sockets[path]
        plugin = self._active.pop(path, None)
        if plugin is None:
            return
        await plugin.close()
        if self._latest.get(plugin.driver_name) is plugin:
            successor = self.registered(plugin.driver_name)
            if successor is None:
                del self._latest[plugin.driver_name]
            else:
                self._latest[plugin.driver_name] = successor

    def _describe_pending(self) -> str:
        pending = self.pending_sockets()
        return ", ".join(f"{p.name}: {e}" for p, e in sorted(pending.items())) or "none"

    async def _attempt(self, path: Path, state: _SocketState) -> None:
        try:
            plugin = await self._register(path)
        except RegistrationRejectedError as e:
            state.settled = True
            self._rejections.append(e)
            self._latest[e.info.name] = e
            return
        except RegistrationError as e:
            # Steps before validation failed: the kubelet retries from scratch with backoff.
            state.failures += 1
            state.last_error = e.reason
            backoff = min(self.poll_interval * 2**state.failures, _MAX_BACKOFF)
            state.next_attempt = time.monotonic() + backoff
            return
        state.settled = True
        self._active[path] = plugin
        self._history.append(plugin)
        self._latest[plugin.driver_name] = plugin

    async def _register(self, path: Path) -> RegisteredPlugin:
        """One registration attempt for a socket, following the kubelet's sequence."""
        async with grpc.aio.insecure_channel(f"unix:{path}") as channel:
            stub = reg_grpc.RegistrationStub(channel)
            try:
                answer = await stub.GetInfo(reg_pb.InfoRequest(), timeout=GET_INFO_TIMEOUT)
            except grpc.aio.AioRpcError as e:
                raise RegistrationError(
                    path, f"GetInfo failed: {e.code().name}: {e.details()}"
                ) from e
            info = PluginInfoRecord(
                type=answer.type,
                name=answer.name,
                endpoint=answer.endpoint,
                supported_versions=tuple(answer.supported_versions),
            )

            async def reject(error_type: type[RegistrationRejectedError], reason: str) -> NoReturn:
                status = RegistrationStatusRecord(plugin_registered=False, error=reason)
                notify_error = await self._notify(stub, status)
                raise error_type(path, reason, info, status, notify_error)

            if info.type != DRA_PLUGIN_TYPE:
                await reject(
                    UnsupportedPluginTypeError,
                    f"plugin type {info.type!r} is not supported by this kubelet simulator "
                    f"(only {DRA_PLUGIN_TYPE!r})",
                )
            endpoint = info.endpoint or str(path)
            version = choose_version(info.supported_versions, self.kubelet_versions)
            if version is None:
                await reject(
                    UnsupportedVersionsError,
                    f"none of the services supported by the plugin "
                    f"{list(info.supported_versions)} is supported by the kubelet "
                    f"{[t for t, v in SERVICE_TOKENS.items() if v in self.kubelet_versions]}",
                )
            clash = next(
                (
                    p
                    for p in self._active.values()
                    if p.driver_name == info.name and p.endpoint == endpoint
                ),
                None,
            )
            if clash is not None:
                await reject(
                    DuplicateEndpointError,
                    f"DRA driver {info.name} is already registered with endpoint {endpoint} "
                    f"from {clash.registration_socket}",
                )
            # Like the kubelet, keep a long-lived connection to the endpoint; it is not
            # required to be up yet, so connecting is only started, not awaited.
            dra_channel = grpc.aio.insecure_channel(f"unix:{endpoint}")
            dra_channel.get_state(try_to_connect=True)
            status = RegistrationStatusRecord(plugin_registered=True, error="")
            try:
                notify_error = await self._notify(stub, status)
            except BaseException:
                await dra_channel.close()
                raise
            return RegisteredPlugin(
                registration_socket=path,
                info=info,
                endpoint=endpoint,
                version=version,
                status_sent=status,
                notify_error=notify_error,
                sequence=next(self._sequence),
                channel=dra_channel,
            )

    async def _notify(
        self, stub: reg_grpc.RegistrationAsyncStub, status: RegistrationStatusRecord
    ) -> str | None:
        try:
            await stub.NotifyRegistrationStatus(
                reg_pb.RegistrationStatus(
                    plugin_registered=status.plugin_registered, error=status.error
                ),
                timeout=NOTIFY_TIMEOUT,
            )
        except grpc.aio.AioRpcError as e:
            return f"{e.code().name}: {e.details()}"
        return None
