"""Concurrent kubelet calls with the gateway's batching on, across all five services on real
NATS: whichever calls share a request to the preparer, each pod gets exactly its claims."""

from __future__ import annotations

import asyncio

from hostdev_testing.cluster import Allocated, Claim, Cluster
from hostdev_testing.kubelet import KubeletSimulator
from hostdev_testing.services import NodeConfig, Services


async def test_concurrent_pods_with_batching_each_get_their_own_claims_prepared_and_unprepared(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """Twelve pods at once (one with two claims, one whose device does not exist), batches
    of at most four claims: each call is answered with its own claims, the missing device
    fails only its own claim, every spec is written and then removed again."""
    services.extra_env["HOSTDEV_CLAIM_BATCH"] = "4"
    await services.start()
    plugin = await kubelet.wait_for_driver(node_config.driver, timeout=10)
    pods: list[list[Claim]] = [
        [await cluster.allocated_claim("default", f"vm-{i}", [Allocated("kvm", "kvm")])]
        for i in range(10)
    ]
    pods[0].append(await cluster.allocated_claim("default", "vm-0b", [Allocated("kvm", "kvm")]))
    missing = await cluster.allocated_claim("default", "nodevice", [Allocated("x", "no-such")])
    pods.append([missing])
    pods.append(
        [
            await cluster.allocated_claim(
                "default", "render", [Allocated("gpu", "dev-dri-renderd128")]
            )
        ]
    )

    prepared = await asyncio.gather(*(plugin.prepare(claims) for claims in pods))
    for claims, outcome in zip(pods, prepared, strict=True):
        assert list(outcome.claims) == [c.uid for c in claims]
        for claim in claims:
            result = outcome.claims[claim.uid]
            if claim is missing:
                assert result.error
                assert not result.devices
            else:
                assert result.error == ""
                (device,) = result.devices
                (cdi_id,) = device.cdi_device_ids
                assert claim.uid in cdi_id
    specs = sorted(node_config.cdi_root.glob(f"k8s.{node_config.driver}-device_*.json"))
    assert len(specs) == sum(len(claims) for claims in pods) - 1

    unprepared = await asyncio.gather(*(plugin.unprepare(claims) for claims in pods))
    for claims, undone in zip(pods, unprepared, strict=True):
        assert {uid: c.error for uid, c in undone.claims.items()} == {c.uid: "" for c in claims}
    assert sorted(node_config.cdi_root.glob(f"k8s.{node_config.driver}-device_*.json")) == []
