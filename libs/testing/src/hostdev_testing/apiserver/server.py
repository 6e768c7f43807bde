"""ApiServer: the emulator served over real HTTP, plus direct access to its state for tests."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from hostdev_testing.apiserver.gates import FeatureGates
from hostdev_testing.apiserver.registry import Registry
from hostdev_testing.apiserver.resources import Obj, resource
from hostdev_testing.apiserver.routes import Handler
from hostdev_testing.apiserver.schema import OpenApi
from hostdev_testing.apiserver.selectors import Selector
from hostdev_testing.apiserver.store import Store

DEFAULT_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
_MAX_BODY = 3 * 1024 * 1024


class ApiServer:
    """A stateful kube-apiserver stand-in for nodes, namespaces and resource.k8s.io/v1.

    `schemas_dir` holds the official OpenAPI documents; without it, only the hand-written
    server-side rules are checked. `feature_gates` turns modelled gates off as
    `--feature-gates` does (see `gates`); `gates` changes them later, as a restart of the
    server with other flags would. Use as `async with ApiServer(schemas_dir=d) as url:`.
    """

    def __init__(
        self,
        schemas_dir: Path | None = None,
        *,
        history: int = 10_000,
        bookmark_interval: float = 60.0,
        host: str = "127.0.0.1",
        port: int = 0,
        feature_gates: Mapping[str, bool] | None = None,
    ) -> None:
        self.store = Store(history)
        openapi = OpenApi.load(schemas_dir) if schemas_dir is not None else None
        self.gates = FeatureGates.of(feature_gates)
        self.registry = Registry(
            self.store,
            openapi,
            gates=self.gates,
        )
        self._handler = Handler(self.registry, bookmark_interval)
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        for name in DEFAULT_NAMESPACES:
            self.create("namespaces", {"metadata": {"name": name}})

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("ApiServer is not started")
        return self._url

    @property
    def resource_version(self) -> int:
        """The current global revision, as lists report it."""
        return self.store.revision

    async def start(self) -> str:
        """Listen on a free port of 127.0.0.1 (unless told otherwise) and return the base URL."""
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._handler.handle)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0
        )
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = sock.getsockname()[:2]
        self._url = f"http://{host}:{port}"
        return self._url

    async def stop(self) -> None:
        """End every watch stream cleanly, then stop listening."""
        self.store.close()
        await self._stop_listening()

    async def _stop_listening(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def go_down(self) -> None:
        """An outage: watch streams end and connections are refused; the state is kept."""
        self.store.end_watches()
        await self._stop_listening()

    async def come_back(self) -> None:
        """Serve again on the same address after `go_down`, with the same objects and history."""
        _, port = self.url.rsplit(":", 1)
        self._port = int(port)
        await self.start()

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def objects(self, plural: str, namespace: str | None = None) -> list[Obj]:
        """Copies of the stored objects of a resource (e.g. "resourceslices"), in key order."""
        return self.registry.select(resource(plural), namespace, Selector())

    def get(self, plural: str, name: str, namespace: str = "") -> Obj | None:
        """A copy of one stored object, or None."""
        rt = resource(plural)
        found = self.store.get(plural, (namespace if rt.namespaced else "", name))
        return None if found is None else self.registry.get(rt, namespace, name)

    def create(self, plural: str, body: Obj, namespace: str = "") -> Obj:
        """Seed an object through the same path as a POST (validation included)."""
        rt = resource(plural)
        ns = namespace or body.get("metadata", {}).get("namespace", "")
        return self.registry.create(rt, ns, body).obj

    def update(self, plural: str, body: Obj, *, status: bool = False) -> Obj:
        """Replace an object as a PUT would (to `/status` when `status`)."""
        rt, meta = resource(plural), body.get("metadata", {})
        return self.registry.replace(
            rt, meta.get("namespace", ""), meta.get("name", ""), body, status=status
        ).obj

    def delete(self, plural: str, name: str, namespace: str = "") -> Obj:
        """Delete as a DELETE would: objects with finalizers only get a deletionTimestamp."""
        return self.registry.delete(resource(plural), namespace, name, None)

    async def wait_until(self, condition: Callable[[], Any]) -> Any:
        """Re-check `condition` after every change until it is truthy; bound it with a timeout."""
        while not (result := condition()):
            await self.store.changed()
        return result
