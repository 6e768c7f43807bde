"""The test kit's Services: a service task that does not stop in time fails loudly."""

from __future__ import annotations

import asyncio

import nats
import pytest

from hostdev_testing.services import NodeConfig, ServiceDidNotStop, Services, _Running


async def _ignores_its_stop(stopping: asyncio.Event) -> None:
    await asyncio.Event().wait()  # never looks at `stopping`


async def _stops(stopping: asyncio.Event) -> None:
    await stopping.wait()


async def test_a_service_task_that_does_not_stop_fails_with_every_task_stack_and_is_ended(
    node_config: NodeConfig,
) -> None:
    nc = await nats.connect(node_config.nats_url)
    try:
        services = Services(node_config, nc)
        stuck_stop, good_stop = asyncio.Event(), asyncio.Event()
        stuck = asyncio.create_task(_ignores_its_stop(stuck_stop), name="preparer")
        good = asyncio.create_task(_stops(good_stop), name="allocator")
        services.running["preparer"] = _Running(task=stuck, stopping=stuck_stop)
        services.running["allocator"] = _Running(task=good, stopping=good_stop)
        with pytest.raises(ServiceDidNotStop) as failed:
            async with asyncio.timeout(10):
                await services.stop_all(timeout=0.05)
    finally:
        await nc.close()
    message = str(failed.value)
    assert "preparer did not stop within 0.05s" in message
    assert "in _ignores_its_stop" in message  # where the stuck task waits
    assert "allocator did not stop" not in message
    assert stuck.cancelled()  # ended, not left to outlive the test
    assert good.done()
    assert not good.cancelled()
    assert services.running == {}
