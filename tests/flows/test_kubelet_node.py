"""The compose kubelet simulator drives a node: it registers, prepares and unprepares demo claims."""

from __future__ import annotations

import asyncio

from hostdev_testing import kubelet_node
from hostdev_testing.services import NodeConfig, Services


async def test_kubelet_node_round_prepares_every_demo_device(
    services: Services, node_config: NodeConfig
) -> None:
    """One round of the simulator prepares and unprepares a claim for each demo device."""
    await services.start()
    outcomes = await kubelet_node.drive(node_config.env(), asyncio.Event(), rounds=1)
    assert len(outcomes) == len(kubelet_node.DEMO_DEVICES)
    assert all(line.endswith(": ok") for line in outcomes), outcomes
