"""Writes the node's ResourceSlices and notices when someone else changes or deletes them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace

from hostdev_discovery.fallback import SharedFallback
from hostdev_discovery.inventory import bounded
from hostdev_events.inventory import Device
from hostdev_families.slices import Existing, Pool, SlicePlan, plan
from hostdev_kube import Conflict, Kube, KubeError, NotFound, SliceObject

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("hostdev_discovery")

_CONFLICT_RETRIES = 3


class SlicePublisher:
    """Keeps the server's slices of one pool equal to the inventory."""

    def __init__(
        self,
        kube: Kube,
        node: str,
        driver: str,
        taint_effect: str | None = None,
        shared: SharedFallback | None = None,
    ) -> None:
        self.kube = kube
        self.shared = shared  # shared devices as copies when the server drops the field
        self.node = node
        self.driver = driver
        self.taint_effect = taint_effect
        self.pool = Pool(node=node, driver=driver)
        # What this process last wrote, by slice name: a server copy at the same
        # resourceVersion is ours, whatever defaults the server added to it.
        self._written: dict[str, Existing] = {}
        self.list_version = ""

    async def owner(self) -> None:
        """Look up the Node's UID once, for the slices' owner reference."""
        if self.pool.node_uid:
            return
        try:
            node = await self.kube.get_node(self.node)
        except NotFound:
            logger.warning("node object not found; slices get no owner reference")
            return
        self.pool = Pool(node=self.node, driver=self.driver, node_uid=node.metadata.uid)

    def ours(self, resource_version: str) -> bool:
        """Whether a watch event shows a write of this process."""
        return any(e.resource_version == resource_version for e in self._written.values())

    def _existing(self, item: SliceObject) -> Existing:
        mine = self._written.get(item.metadata.name)
        if mine is not None and mine.resource_version == item.metadata.resource_version:
            return mine
        pool = item.spec.get("pool", {})
        return Existing(
            name=item.metadata.name,
            resource_version=item.metadata.resource_version,
            generation=int(pool.get("generation", 0)),
            slice_count=int(pool.get("resourceSliceCount", 0)),
            devices=tuple(item.spec.get("devices") or ()),
            counters=tuple(item.spec.get("sharedCounters") or ()),
        )

    async def reconcile(self, devices: Sequence[Device]) -> SlicePlan:
        """Make the server match `devices`; returns what was written."""
        with tracer.start_as_current_span("publish resource slices") as span:
            await self.owner()
            if self.shared is not None:
                devices = self.shared.expand(devices)
            for attempt in range(_CONFLICT_RETRIES):
                listed = await self.kube.list_slices(self.node, self.driver)
                self.list_version = listed.metadata.resource_version
                todo = plan(
                    self.pool, [self._existing(i) for i in listed.items], devices, self.taint_effect
                )
                try:
                    await self._apply(todo)
                except Conflict:
                    if attempt == _CONFLICT_RETRIES - 1:
                        raise
                    continue  # someone wrote in between: list again and re-plan
                span.set_attribute("dra.slices.written", len(todo.creates) + len(todo.updates))
                return todo
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _apply(self, todo: SlicePlan) -> None:
        # Creates and updates in parallel (the new generation wins once all are in), then
        # the deletes of slices nobody needs any more.
        await bounded(
            [self._update(name, version, body) for name, version, body in todo.updates]
            + [self._create(body) for body in todo.creates]
        )
        await bounded([self._delete(name) for name in todo.deletes])
        if not todo.empty:
            logger.info(
                "slices published",
                extra={
                    "created": len(todo.creates),
                    "updated": len(todo.updates),
                    "deleted": len(todo.deletes),
                },
            )

    async def _update(self, name: str, version: str, body: dict[str, Any]) -> None:
        body["metadata"] = {**body["metadata"], "name": name, "resourceVersion": version}
        body["metadata"].pop("generateName", None)
        self._record(await self.kube.replace_slice(name, body), body)

    async def _create(self, body: dict[str, Any]) -> None:
        self._record(await self.kube.create_slice(body), body)

    async def _delete(self, name: str) -> None:
        await self.kube.delete_slice(name)
        self._written.pop(name, None)

    def _record(self, stored: SliceObject, body: dict[str, Any]) -> None:
        if self.shared is not None:
            self.shared.observe(body, stored)
        pool = body["spec"]["pool"]
        self._written[stored.metadata.name] = Existing(
            name=stored.metadata.name,
            resource_version=stored.metadata.resource_version,
            generation=pool["generation"],
            slice_count=pool["resourceSliceCount"],
            devices=tuple(body["spec"].get("devices", ())),
            counters=tuple(body["spec"].get("sharedCounters", ())),
        )

    async def watch(self, changed: asyncio.Event, stopping: asyncio.Event) -> None:
        """Set `changed` whenever a slice of ours is changed or deleted by someone else."""
        while not stopping.is_set():
            version = self.list_version
            if not version:
                await asyncio.sleep(0.5)  # reconcile has not listed yet
                continue
            try:
                async for event in self.kube.watch_slices(self.node, self.driver, version, 60):
                    rv = str(event.object.get("metadata", {}).get("resourceVersion", ""))
                    if event.type == "BOOKMARK":
                        self.list_version = rv or self.list_version
                        continue
                    self.list_version = rv or self.list_version
                    if not self.ours(rv) or event.type == "DELETED":
                        changed.set()
            except KubeError as err:
                logger.warning("slice watch ended", extra={"error": str(err)})
                changed.set()  # list again; the next reconcile refreshes list_version
                self.list_version = ""
                await asyncio.sleep(1.0)
