"""A preparer killed in the middle of a prepare: the next prepare converges, nothing is held twice."""

from __future__ import annotations

import asyncio

import grpc
import nats
import pytest

from hostdev_bus import NatsKv
from hostdev_events import subjects
from hostdev_events.alloc import Hold
from hostdev_events.state import Checkpoint
from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.kubelet import KubeletSimulator, PluginCallError
from hostdev_testing.services import NodeConfig, Services


async def test_prepare_after_preparer_killed_mid_prepare_converges(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """Kill the preparer while it waits on the CDI writer; a new one finishes the same claim once."""
    node = node_config.node
    nc = await nats.connect(node_config.nats_url)
    try:
        # Stand in for a CDI writer that never answers, to learn when the preparer is mid-way.
        write_seen = asyncio.Event()

        async def swallow(msg: object) -> None:
            write_seen.set()

        await nc.subscribe(subjects.cdi_write(node), cb=swallow)
        await nc.flush()
        await services.start("gateway", "discovery", "allocator", "preparer", processes=True)
        plugin = await kubelet.wait_for_driver(node_config.driver, timeout=10)
        claim = await cluster.allocated_claim("default", "crash", [Allocated("dev", "udmabuf")])

        first = asyncio.create_task(plugin.prepare([claim], timeout=2))
        await asyncio.wait_for(write_seen.wait(), timeout=10)
        await services.kill("preparer")
        with pytest.raises(PluginCallError) as failed:
            await first
        assert failed.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

        await nc.close()  # the stand-in goes; the real CDI writer takes the subject
        await services.start("cdi-writer", "preparer", processes=True)
        outcome = await plugin.prepare([claim])
        assert outcome.kubelet_failure is None, services.log("preparer")
        assert len(list(node_config.cdi_root.glob(f"k8s.{node_config.driver}-device_*.json"))) == 1

        nc = await nats.connect(node_config.nats_url)
        js = nc.jetstream()
        ledger = await NatsKv.open(js, subjects.LEDGER_BUCKET, Hold)
        hold = await ledger.get(subjects.device_key(node, "udmabuf"))
        assert hold is not None
        assert hold[0].holders == (claim.uid,)
        checkpoints = await NatsKv.open(js, subjects.CHECKPOINT_BUCKET, Checkpoint)
        assert await checkpoints.keys(subjects.device_key_prefix(node)) == [
            subjects.checkpoint_key(node, claim.uid)
        ]

        rival = await cluster.allocated_claim("default", "rival", [Allocated("dev", "udmabuf")])
        refused = await plugin.prepare([rival])
        assert claim.uid in refused.claims[rival.uid].error
    finally:
        await nc.close()
