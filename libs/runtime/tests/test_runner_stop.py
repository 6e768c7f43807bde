"""Stopping a service: requests in flight get the drain window, then are cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import nats
import pytest

from hostdev_events import subjects
from hostdev_events.base import Message
from hostdev_events.inventory import GetInventory
from hostdev_runtime import runner
from hostdev_runtime.runner import Route, ServiceContext, run_service
from hostdev_runtime.settings import CommonSettings

NODE = "stop-test"


async def test_a_handler_that_never_finishes_is_cancelled_after_the_drain_window(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "DRAIN_SECONDS", 0.2)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def stuck(_: GetInventory) -> Message | None:
        started.set()
        try:
            await asyncio.Event().wait()  # a peer that never answers
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return None

    async def app(_: ServiceContext) -> Sequence[Route[Any]]:
        return (Route(subjects.inventory_get(NODE), GetInventory, stuck),)

    stopping = asyncio.Event()
    settings = CommonSettings(node_name=NODE, nats_url=nats_url)
    service = asyncio.create_task(run_service("stop-test", settings, app, stopping))
    client = await nats.connect(nats_url)
    try:
        async with asyncio.timeout(10):
            while not started.is_set():
                # The subscription may not exist yet: ask again until the handler runs.
                request = client.request(
                    subjects.inventory_get(NODE), b'{"type":"inventory.get.v1"}', timeout=0.5
                )
                with_reply = asyncio.ensure_future(request)
                done, _ = await asyncio.wait(
                    {with_reply, asyncio.ensure_future(started.wait())},
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if with_reply in done:
                    with_reply.exception()  # no responders yet; try again
                else:
                    with_reply.cancel()
        stopping.set()
        async with asyncio.timeout(5):  # far less than a handler that never ends
            await service
    finally:
        await client.close()
    assert cancelled.is_set()
