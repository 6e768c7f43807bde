"""HTTP: the REST paths of the served resources, mapped onto the registry."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

from hostdev_testing.apiserver import discovery, errors, listing
from hostdev_testing.apiserver.errors import ApiError, bad_request
from hostdev_testing.apiserver.registry import Outcome, Registry
from hostdev_testing.apiserver.resources import RESOURCE_GROUP, Obj, ResourceType, by_group
from hostdev_testing.apiserver.watch import stream

logger = logging.getLogger(__name__)

_PREFIXES = {"/api/v1": "", f"/apis/{RESOURCE_GROUP}/v1": RESOURCE_GROUP}
_DOCUMENTS = {
    "/api": discovery.core_versions,
    "/api/v1": lambda: discovery.resource_list(""),
    "/apis": discovery.group_list,
    f"/apis/{RESOURCE_GROUP}": discovery.group,
    f"/apis/{RESOURCE_GROUP}/v1": lambda: discovery.resource_list(RESOURCE_GROUP),
    "/version": discovery.version,
}
_JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Target:
    """What a request path names: a collection, an object, or an object's subresource."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None
    watch_path: bool


def parse_path(path: str) -> Target | None:
    for prefix, group in _PREFIXES.items():
        if path.startswith(prefix + "/"):
            parts = [p for p in path[len(prefix) + 1 :].split("/") if p]
            return _target(group, parts)
    return None


def _target(group: str, parts: list[str]) -> Target | None:
    watch_path = bool(parts) and parts[0] == "watch"
    parts = parts[1:] if watch_path else parts
    served = {rt.plural: rt for rt in by_group(group)}
    namespace = None
    if (
        len(parts) >= 3
        and parts[0] == "namespaces"
        and parts[2] in served
        and served[parts[2]].namespaced
    ):
        namespace, parts = parts[1], parts[2:]
    if not parts or parts[0] not in served or len(parts) > 3:
        return None
    rt = served[parts[0]]
    if namespace is None and rt.namespaced and len(parts) > 1:
        return None
    name = parts[1] if len(parts) > 1 else None
    subresource = parts[2] if len(parts) > 2 else None
    if subresource is not None and (
        subresource != "status" or not rt.status_subresource or watch_path
    ):
        return None
    return Target(rt, namespace, name, subresource, watch_path)


def respond(body: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    response = web.Response(body=msgspec.json.encode(body), status=status, content_type=_JSON)
    for warning in warnings or []:
        escaped = warning.replace('"', '\\"')
        response.headers.add("Warning", f'299 - "{escaped}"')
    return response


def _outcome(outcome: Outcome) -> web.Response:
    return respond(outcome.obj, 201 if outcome.created else 200, outcome.warnings)


class Handler:
    """The single aiohttp handler: route by path shape and method, answer JSON."""

    def __init__(self, registry: Registry, bookmark_interval: float) -> None:
        self.registry = registry
        self.bookmark_interval = bookmark_interval

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except ApiError as exc:
            return respond(exc.status(), exc.code)
        except web.HTTPException:
            raise
        except Exception as exc:
            logger.exception("request failed", extra={"path": request.path})
            error = errors.internal(f"Internal error occurred: {exc}")
            return respond(error.status(), error.code)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path in _DOCUMENTS and request.method == "GET":
            return respond(_DOCUMENTS[path]())
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok", content_type="text/plain")
        target = parse_path(request.path)
        if target is None:
            raise errors.path_not_found()
        if target.name is None:
            return await self._collection(request, target)
        return await self._item(request, target, target.name)

    async def _collection(self, request: web.Request, target: Target) -> web.StreamResponse:
        rt, namespace = target.rt, target.namespace
        query = listing.Query.parse(request.query, rt, force_watch=target.watch_path)
        if request.method == "GET" and query.watch:
            return await self._watch(request, target, query)
        if request.method == "GET":
            return respond(listing.list_objects(self.registry, rt, namespace, query))
        # Namespaced types accept writes only under /namespaces/<ns>/.
        if namespace is None and rt.namespaced:
            raise errors.method_not_allowed()
        if request.method == "POST":
            body = await _body(request)
            return _outcome(self.registry.create(rt, namespace or "", body, query.write))
        raise errors.method_not_allowed()

    async def _item(self, request: web.Request, target: Target, name: str) -> web.StreamResponse:
        rt, namespace = target.rt, target.namespace or ""
        query = listing.Query.parse(request.query, rt, force_watch=target.watch_path)
        status = target.subresource == "status"
        if target.watch_path or (request.method == "GET" and query.watch):
            return await self._watch(request, target, query.for_name(name))
        if request.method == "GET":
            return respond(self.registry.get(rt, namespace, name))
        if request.method == "PUT":
            body = await _body(request)
            return _outcome(
                self.registry.replace(rt, namespace, name, body, query.write, status=status)
            )
        if request.method == "DELETE" and not status:
            options = await _body(request, optional=True)
            return respond(
                self.registry.delete(rt, namespace, name, options, dry_run=query.dry_run)
            )
        raise errors.method_not_allowed()

    async def _watch(
        self, request: web.Request, target: Target, query: listing.Query
    ) -> web.StreamResponse:
        store = self.registry.store
        watch = query.watch_request(store, target.rt, target.namespace, self.bookmark_interval)
        response = web.StreamResponse(status=200, headers={"Content-Type": _JSON})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            async with contextlib.aclosing(stream(store, watch)) as events:
                async for event in events:
                    await response.write(msgspec.json.encode(event) + b"\n")
            await response.write_eof()
        except ConnectionResetError:
            # The client went away; there is nobody left to tell.
            pass
        return response


async def _body(request: web.Request, *, optional: bool = False) -> Any:
    content_type = request.headers.get("Content-Type", _JSON).split(";")[0].strip() or _JSON
    raw = await request.read()
    if optional and not raw:
        return None
    if content_type != _JSON:
        accepted = [
            _JSON,
            "application/yaml",
            "application/vnd.kubernetes.protobuf",
            "application/cbor",
        ]
        raise errors.unsupported_media_type(accepted)
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None


__all__ = ["Handler", "Obj", "Target", "parse_path", "respond"]
