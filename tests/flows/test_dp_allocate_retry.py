"""A device-plugin Allocate whose reservation reply is lost, and the kubelet's retry of it."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest

from hostdev_bus import NatsBus
from hostdev_events import subjects
from hostdev_events.dp import Allocations, ListAllocations
from hostdev_testing.fakehost import DEMO_HOST_PATHS
from hostdev_testing.kubelet_dp import DevicePluginKubelet
from hostdev_testing.services import NodeConfig, Services

UDMA = "intel.com/udma"


async def test_retry_of_an_allocate_whose_reserve_was_lost_stays_allocated(
    services: Services, node_config: NodeConfig
) -> None:
    """The first Allocate times out at the kubelet while the preparer still waits for the
    allocator; the retry queues behind it and succeeds once the allocator is back. The
    first one's rollback must not undo what the retry was told is allocated."""
    body = {
        "hostPaths": list(DEMO_HOST_PATHS),
        "resources": [{"name": UDMA, "devices": ["udmabuf"]}],
    }
    node_config.devices_config.write_text(json.dumps(body))
    node_config.pod_resources_socket.parent.mkdir(parents=True, exist_ok=True)
    nc = await nats.connect(node_config.nats_url)
    # The kubelet's Allocate has no deadline: the retry may wait for the first call's hop
    # to the allocator to time out (10 s). The first caller gives up after 2 s.
    kubelet = DevicePluginKubelet(node_config.device_plugins_dir, call_timeout=30)
    try:
        reserve_seen = asyncio.Event()

        async def swallow(msg: object) -> None:
            reserve_seen.set()  # an allocator killed after reading the request

        lost = await nc.subscribe(subjects.alloc_reserve(node_config.node), cb=swallow)
        await nc.flush()
        await kubelet.start()
        await services.start("gateway", "discovery", "preparer", "cdi-writer")
        await kubelet.wait_for(UDMA, lambda d: len(d) == 1, timeout=10)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2):
                await kubelet.allocate(UDMA, ["udmabuf"])
        assert reserve_seen.is_set()
        await lost.unsubscribe()
        await services.start("allocator")
        retry = await kubelet.allocate(UDMA, ["udmabuf"])
        assert retry.cdi_devices

        listed = await NatsBus(nc).request(
            subjects.dp_list(node_config.node), ListAllocations(resource=UDMA), Allocations, 10
        )
        assert listed.ids == ("udmabuf",)
        assert list(node_config.cdi_root.glob("*udmabuf*.json"))
    finally:
        await kubelet.close()
        await nc.close()
