"""At start-up the CDI writer removes spec files whose claim has no checkpoint, and only those."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from hostdev_cdi_writer.handlers import IN_FLIGHT_SECONDS
from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.kubelet import KubeletSimulator
from hostdev_testing.services import NodeConfig, Services

ORPHAN = "0f0e0d0c-0000-4000-8000-00000000dead"
IN_FLIGHT = "0f0e0d0c-0000-4000-8000-00000000beef"


def _age(*paths: Path) -> None:
    """Make files look written long before now (past the CDI writer's in-flight window)."""
    then = time.time() - 10 * IN_FLIGHT_SECONDS
    for path in paths:
        for each in (path, *path.rglob("*")) if path.is_dir() else (path,):
            os.utime(each, (then, then))


async def test_orphan_specs_go_and_prepared_claims_keep_theirs(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """A spec left by a claim that no checkpoint knows (a crash after unprepare, a reboot
    race) is removed when the CDI writer starts; a prepared claim's spec stays, and so does
    one written too recently to tell from a prepare about to record its checkpoint."""
    services.extra_env["HOSTDEV_DEVICE_METADATA"] = "all"  # so the kept claim has a folder too
    await services.start()
    plugin = await kubelet.wait_for_driver(node_config.driver, timeout=10)
    claim = await cluster.allocated_claim("default", "kept", [Allocated("kvm", "kvm")])
    assert (await plugin.prepare([claim])).kubelet_failure is None
    kind = f"k8s.{node_config.driver}/device"
    orphan = node_config.cdi_root / f"k8s.{node_config.driver}-device_{ORPHAN}.json"
    orphan.write_text(
        json.dumps(
            {
                "cdiVersion": "0.5.0",
                "kind": kind,
                "devices": [{"name": f"{ORPHAN}-kvm", "containerEdits": {}}],
            }
        )
    )
    (node_config.cdi_root / "dra-device-metadata" / ORPHAN / "r").mkdir(parents=True)
    _age(orphan, node_config.cdi_root / "dra-device-metadata" / ORPHAN)
    in_flight = node_config.cdi_root / f"k8s.{node_config.driver}-device_{IN_FLIGHT}.json"
    in_flight.write_text(orphan.read_text().replace(ORPHAN, IN_FLIGHT))
    await services.stop("cdi-writer")
    await services.start("cdi-writer")
    assert not orphan.exists()
    assert not (node_config.cdi_root / "dra-device-metadata" / ORPHAN).exists()
    # Written a moment ago: maybe a prepare about to record its checkpoint, so it stays.
    assert in_flight.exists()
    assert (node_config.cdi_root / f"k8s.{node_config.driver}-device_{claim.uid}.json").exists()
    assert (node_config.cdi_root / "dra-device-metadata" / claim.uid).exists()
