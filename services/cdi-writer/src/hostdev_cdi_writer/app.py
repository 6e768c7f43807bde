"""Wiring: routes, and orphan removal at start-up."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from hostdev_bus import NatsKv
from hostdev_cdi import filesystem
from hostdev_cdi_writer.handlers import Deps, on_remove, on_write, remove_orphans
from hostdev_cdi_writer.settings import Settings
from hostdev_events import subjects
from hostdev_events.cdi import RemoveCdiSpecs, WriteCdiSpecs
from hostdev_events.state import Checkpoint
from hostdev_runtime.runner import App, Route, ServiceContext

SERVICE = "cdi-writer"
logger = logging.getLogger(__name__)


def routes(node: str, deps: Deps) -> tuple[Route[Any], ...]:
    """Subjects this service answers."""
    return (
        Route(subjects.cdi_write(node), WriteCdiSpecs, partial(on_write, deps=deps)),
        Route(subjects.cdi_remove(node), RemoveCdiSpecs, partial(on_remove, deps=deps)),
    )


def app(settings: Settings) -> App:
    """The CDI writer app for the runner."""

    async def start(ctx: ServiceContext) -> Sequence[Route[Any]]:
        root = Path(settings.cdi_root)
        on_loop = settings.cdi_write_on_loop == "always" or (
            settings.cdi_write_on_loop == "auto" and filesystem.in_memory(root)
        )
        deps = Deps(
            node=settings.node_name, driver=settings.driver_name, cdi_root=root, on_loop=on_loop
        )
        logger.info(
            "spec files are written on the %s",
            "event loop" if on_loop else "worker threads",
            extra={"cdi_root": str(root), "cdi_write_on_loop": settings.cdi_write_on_loop},
        )
        checkpoints = await NatsKv.open(
            ctx.js, subjects.CHECKPOINT_BUCKET, Checkpoint, ctx.settings.kv_replicas
        )
        await remove_orphans(deps, checkpoints)
        return routes(settings.node_name, deps)

    return start
