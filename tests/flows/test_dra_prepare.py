"""Prepare and unprepare through the kubelet's DRA socket, across all five services on real NATS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, cast

import pytest

from hostdev_bus import NatsKv
from hostdev_events import subjects
from hostdev_events.alloc import Hold
from hostdev_events.state import Checkpoint, ClaimStep
from hostdev_testing.cluster import RESOURCE_API, Allocated, Claim, Cluster
from hostdev_testing.kubelet import KubeletSimulator, RegisteredPlugin
from hostdev_testing.schemas import validate_cdi
from hostdev_testing.services import NodeConfig, Services


async def _plugin(
    services: Services, kubelet: KubeletSimulator, config: NodeConfig
) -> RegisteredPlugin:
    await services.start()
    return await kubelet.wait_for_driver(config.driver, timeout=10)


def _spec_files(config: NodeConfig) -> list[Path]:
    """The claim specs (device kind), not the metadata specs beside them."""
    pattern = f"k8s.{config.driver}-device_*.json"
    return sorted(config.cdi_root.glob(pattern)) if config.cdi_root.exists() else []


def _all_cdi_entries(config: NodeConfig) -> list[Path]:
    """Every file the CDI writer left, metadata files included."""
    return (
        sorted(p for p in config.cdi_root.rglob("*") if p.is_file())
        if config.cdi_root.exists()
        else []
    )


async def test_registration_advertises_both_dra_versions(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig
) -> None:
    """GetInfo names the DRA socket and v1 before v1beta1; the kubelet's verdict is accepted."""
    plugin = await _plugin(services, kubelet, node_config)
    assert plugin.info.type == "DRAPlugin"
    assert plugin.info.name == node_config.driver
    assert plugin.info.endpoint == str(node_config.plugins_dir / node_config.driver / "dra.sock")
    assert plugin.info.supported_versions[:2] == ("v1.DRAPlugin", "v1beta1.DRAPlugin")
    assert plugin.version == "v1"
    assert plugin.status_sent.plugin_registered is True


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
async def test_prepare_exclusive_device_writes_cdi_spec_and_unprepare_removes_it(
    services: Services,
    kubelet: KubeletSimulator,
    node_config: NodeConfig,
    cluster: Cluster,
    version: str,
) -> None:
    """An exclusive device is prepared on either DRA version with a CDI ID whose spec is on disk."""
    plugin = await _plugin(services, kubelet, node_config)
    claim = await cluster.allocated_claim(
        "default", "render", [Allocated("gpu", "dev-dri-renderd128")]
    )
    prepared = await plugin.prepare([claim], version=version)  # type: ignore[arg-type]
    result = prepared.claims[claim.uid]
    assert result.error == ""
    (device,) = result.devices
    assert (device.pool_name, device.device_name, device.request_names) == (
        node_config.node,
        "dev-dri-renderd128",
        ("gpu",),
    )
    (cdi_id,) = device.cdi_device_ids  # host paths get no metadata file by default
    assert cdi_id == f"k8s.{node_config.driver}/device={claim.uid}-dev-dri-renderd128"
    (spec_file,) = _spec_files(node_config)
    spec = json.loads(spec_file.read_bytes())
    validate_cdi(spec)
    assert spec["cdiVersion"] == "0.5.0"  # hostPath in a device node needs 0.5.0, nothing newer
    node = spec["devices"][0]["containerEdits"]["deviceNodes"][0]
    assert node["path"] == "/dev/dri/renderD128"
    assert node["hostPath"] == str(node_config.root / "dev/dri/renderD128")

    unprepared = await plugin.unprepare([claim], version=version)  # type: ignore[arg-type]
    assert unprepared.claims[claim.uid].error == ""
    assert _all_cdi_entries(node_config) == []


async def test_shared_device_is_prepared_for_two_claims_at_once(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """A shareable device (/dev/kvm) may be held by several claims; each gets its own spec."""
    plugin = await _plugin(services, kubelet, node_config)
    first = await cluster.allocated_claim("default", "vm-a", [Allocated("kvm", "kvm")])
    second = await cluster.allocated_claim("default", "vm-b", [Allocated("kvm", "kvm")])
    outcome = await plugin.prepare([first, second])
    assert outcome.kubelet_failure is None
    assert len(_spec_files(node_config)) == 2
    mount_claim = await cluster.allocated_claim("default", "x11", [Allocated("display", "x11")])
    mounted = await plugin.prepare([mount_claim])
    assert mounted.kubelet_failure is None
    spec = json.loads(
        next(p for p in _spec_files(node_config) if mount_claim.uid in p.name).read_bytes()
    )
    validate_cdi(spec)
    mount = spec["devices"][0]["containerEdits"]["mounts"][0]
    assert mount["containerPath"] == "/tmp/.X11-unix"
    assert (await plugin.unprepare([first, second, mount_claim])).kubelet_failure is None
    assert _all_cdi_entries(node_config) == []


async def test_exclusive_device_held_by_one_claim_is_refused_to_another(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """The second claim for an exclusive device gets a per-claim error naming the device and holder."""
    plugin = await _plugin(services, kubelet, node_config)
    holder = await cluster.allocated_claim("default", "a", [Allocated("dev", "udmabuf")])
    other = await cluster.allocated_claim("default", "b", [Allocated("dev", "udmabuf")])
    assert (await plugin.prepare([holder])).kubelet_failure is None
    refused = await plugin.prepare([other])
    error = refused.claims[other.uid].error
    assert "udmabuf" in error
    assert holder.uid in error
    assert len(_spec_files(node_config)) == 1  # nothing written for the refused claim
    assert (await plugin.unprepare([holder])).kubelet_failure is None
    assert (await plugin.prepare([other])).kubelet_failure is None  # free again once released


async def test_repeated_prepare_returns_the_same_answer(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """Preparing a prepared claim again (kubelet restart) returns identical devices and CDI IDs."""
    plugin = await _plugin(services, kubelet, node_config)
    claim = await cluster.allocated_claim("default", "again", [Allocated("net", "tun")])
    first = await plugin.prepare([claim])
    second = await plugin.prepare([claim])
    assert first.claims == second.claims
    assert first.claims[claim.uid].error == ""
    assert len(_spec_files(node_config)) == 1


async def test_unprepare_of_an_unknown_claim_succeeds(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig
) -> None:
    """Unpreparing a claim this node never prepared answers success for it."""
    from hostdev_testing.kubelet import ClaimRef

    plugin = await _plugin(services, kubelet, node_config)
    ghost = ClaimRef(namespace="default", name="ghost", uid="0d1c2b3a-0000-4000-8000-000000000001")
    outcome = await plugin.unprepare([ghost])
    assert outcome.claims[ghost.uid].error == ""


async def test_claim_whose_uid_differs_from_the_api_gets_a_per_claim_error(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """A claim replaced in the API (same name, new UID) is refused for that claim only."""
    from hostdev_testing.kubelet import ClaimRef

    plugin = await _plugin(services, kubelet, node_config)
    good = await cluster.allocated_claim("default", "good", [Allocated("kvm", "kvm")])
    real = await cluster.allocated_claim("default", "replaced", [Allocated("kvm", "kvm")])
    stale = ClaimRef(
        namespace="default", name="replaced", uid="6f1f4a53-2a53-4b4e-9d3c-0c1d8a3b9e11"
    )
    outcome = await plugin.prepare([good, stale])
    assert outcome.claims[good.uid].error == ""
    assert "replaced" in outcome.claims[stale.uid].error
    assert real.uid in outcome.claims[stale.uid].error


async def test_claim_allocated_to_another_driver_only_has_no_devices_here(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """Results of other drivers are skipped; a device from another pool is a per-claim error."""
    plugin = await _plugin(services, kubelet, node_config)
    mixed = await cluster.allocated_claim(
        "default",
        "mixed",
        [Allocated("gpu", "gpu-0", driver="gpu.example.com"), Allocated("kvm", "kvm")],
    )
    foreign_pool = await cluster.allocated_claim(
        "default", "elsewhere", [Allocated("kvm", "kvm", pool="some-other-node")]
    )
    unknown = await cluster.allocated_claim(
        "default", "nodevice", [Allocated("x", "no-such-device")]
    )
    outcome = await plugin.prepare([mixed, foreign_pool, unknown])
    assert [d.device_name for d in outcome.claims[mixed.uid].devices] == ["kvm"]
    assert "some-other-node" in outcome.claims[foreign_pool.uid].error
    assert "no-such-device" in outcome.claims[unknown.uid].error


async def test_metadata_for_every_family_when_asked(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """With HOSTDEV_DEVICE_METADATA=all a host-path claim also gets its metadata file and ID."""
    services.extra_env["HOSTDEV_DEVICE_METADATA"] = "all"
    plugin = await _plugin(services, kubelet, node_config)
    claim = await cluster.allocated_claim(
        "default", "meta", [Allocated("gpu", "dev-dri-renderd128")]
    )
    (device,) = (await plugin.prepare([claim])).claims[claim.uid].devices
    assert device.cdi_device_ids[1] == f"{node_config.driver}/metadata={claim.uid}_gpu"
    assert list(node_config.cdi_root.rglob("metadata.json"))


async def test_admin_access_claim_observes_a_held_device_without_holding_it(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """A claim with adminAccess gets the device while another claim holds it exclusively,
    holds nothing itself, and its unprepare leaves the other claim's hold in place."""
    plugin = await _plugin(services, kubelet, node_config)
    await cluster.create_namespace("ops", {"resource.kubernetes.io/admin-access": "true"})
    user = await cluster.allocated_claim("default", "user", [Allocated("dev", "udmabuf")])
    admin = await cluster.allocated_claim(
        "ops", "monitor", [Allocated("dev", "udmabuf", admin_access=True)]
    )
    assert (await plugin.prepare([user])).kubelet_failure is None
    watched = await plugin.prepare([admin])
    assert watched.kubelet_failure is None
    (device,) = watched.claims[admin.uid].devices
    assert device.device_name == "udmabuf"
    assert device.cdi_device_ids
    assert (await plugin.unprepare([admin])).kubelet_failure is None
    rival = await cluster.allocated_claim("default", "rival", [Allocated("dev", "udmabuf")])
    assert user.uid in (await plugin.prepare([rival])).claims[rival.uid].error


def _claim_path(namespace: str, name: str) -> str:
    return f"{RESOURCE_API}/namespaces/{namespace}/resourceclaims/{name}"


async def _prepared_device(plugin: RegisteredPlugin, claim: Claim) -> str:
    prepared = await plugin.prepare([claim])
    result = prepared.claims[claim.uid]
    assert result.error == ""
    (device,) = result.devices
    return device.device_name


async def test_a_claim_recreated_under_its_name_is_prepared_with_the_new_claims_devices(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """The kubelet names the claim and its UID: the old claim the watch showed under the same
    name never stands in for the new one."""
    plugin = await _plugin(services, kubelet, node_config)
    old = await cluster.allocated_claim("default", "same", [Allocated("dev", "udmabuf")])
    assert await _prepared_device(plugin, old) == "udmabuf"
    assert (await plugin.unprepare([old])).kubelet_failure is None
    await cluster.call("DELETE", _claim_path("default", "same"))
    new = await cluster.allocated_claim("default", "same", [Allocated("gpu", "dev-dri-renderd128")])
    assert new.uid != old.uid
    assert await _prepared_device(plugin, new) == "dev-dri-renderd128"
    assert (await plugin.unprepare([new])).kubelet_failure is None
    assert _all_cdi_entries(node_config) == []


async def test_a_claim_allocated_anew_after_unprepare_is_prepared_with_its_new_devices(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """Same UID, new allocation: a claim once unprepared is read from the API again."""
    plugin = await _plugin(services, kubelet, node_config)
    claim = await cluster.allocated_claim("default", "reused", [Allocated("dev", "udmabuf")])
    assert await _prepared_device(plugin, claim) == "udmabuf"
    assert (await plugin.unprepare([claim])).kubelet_failure is None
    path = _claim_path("default", "reused")
    body = await cluster.call("GET", path)
    body["status"] = {}
    body = await cluster.call("PUT", f"{path}/status", body)
    allocation = {"request": "dev", "driver": node_config.driver, "pool": node_config.node}
    body["status"] = {
        "allocation": {"devices": {"results": [{**allocation, "device": "dev-dri-renderd128"}]}}
    }
    await cluster.call("PUT", f"{path}/status", body)
    assert await _prepared_device(plugin, claim) == "dev-dri-renderd128"
    assert (await plugin.unprepare([claim])).kubelet_failure is None


async def _checkpoint_store(services: Services) -> NatsKv[Checkpoint]:
    return await NatsKv.open(services.nc.jetstream(), subjects.CHECKPOINT_BUCKET, Checkpoint)


async def _holders(services: Services, entry: str) -> tuple[str, ...]:
    ledger = await NatsKv.open(services.nc.jetstream(), subjects.LEDGER_BUCKET, Hold)
    found = await ledger.get(subjects.device_key(services.config.node, entry))
    return () if found is None else found[0].holders


async def test_a_host_path_claim_is_recorded_once_completed_and_dropped_in_one_write(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """No host action, nothing to restore: prepare writes its checkpoint once (completed),
    unprepare deletes it without marking it unpreparing first."""
    plugin = await _plugin(services, kubelet, node_config)
    claim = await cluster.allocated_claim("default", "once", [Allocated("dev", "udmabuf")])
    key = subjects.checkpoint_key(node_config.node, claim.uid)
    store = await _checkpoint_store(services)
    seen: list[ClaimStep | None] = []
    watching = cast(AsyncGenerator[Any, None], store.watch(key.rsplit(".", 1)[0] + "."))
    try:
        while await anext(watching) is not None:  # what the bucket had before
            pass
        assert await _prepared_device(plugin, claim) == "udmabuf"
        assert (await plugin.unprepare([claim])).kubelet_failure is None
        while len(seen) < 2:
            change = await asyncio.wait_for(anext(watching), timeout=5)
            if change[0] == key:
                seen.append(None if change[1] is None else change[1].step)
    finally:
        await watching.aclose()
    assert seen == [ClaimStep.COMPLETED, None]
    assert await _holders(services, "udmabuf") == ()
    assert _all_cdi_entries(node_config) == []


async def test_a_prepare_cut_off_before_its_record_is_undone_by_the_kubelets_unprepare(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """A host-path prepare reserves and writes its spec with its one record: a crash before
    the record landed leaves a hold and a spec with no checkpoint, which the kubelet's unprepare of
    the claim removes by owner."""
    plugin = await _plugin(services, kubelet, node_config)
    claim = await cluster.allocated_claim("default", "cut", [Allocated("dev", "udmabuf")])
    bystander = await cluster.allocated_claim("default", "by", [Allocated("kvm", "kvm")])
    assert await _prepared_device(plugin, claim) == "udmabuf"
    assert await _prepared_device(plugin, bystander) == "kvm"
    # What a crash between the reservation and the record leaves behind.
    await (await _checkpoint_store(services)).delete(
        subjects.checkpoint_key(node_config.node, claim.uid)
    )
    await services.stop("preparer")  # the crash: a preparer starts afresh on what it left
    await services.start("preparer")
    assert await _holders(services, "udmabuf") == (claim.uid,)
    assert _spec_files(node_config)

    assert (await plugin.unprepare([claim])).claims[claim.uid].error == ""
    assert await _holders(services, "udmabuf") == ()
    assert await _holders(services, "kvm") == (bystander.uid,)
    (left,) = _spec_files(node_config)
    assert bystander.uid in left.name
    # The device is free again for another claim.
    other = await cluster.allocated_claim("default", "next", [Allocated("dev", "udmabuf")])
    assert await _prepared_device(plugin, other) == "udmabuf"


async def test_a_refused_host_path_claim_leaves_no_spec_hold_or_record(
    services: Services, kubelet: KubeletSimulator, node_config: NodeConfig, cluster: Cluster
) -> None:
    """The spec is written while the devices are reserved: a refusal removes it again."""
    plugin = await _plugin(services, kubelet, node_config)
    holder = await cluster.allocated_claim("default", "holder", [Allocated("dev", "udmabuf")])
    other = await cluster.allocated_claim(
        "default", "other", [Allocated("dev", "udmabuf"), Allocated("kvm", "kvm")]
    )
    assert await _prepared_device(plugin, holder) == "udmabuf"
    refused = await plugin.prepare([other])
    assert "udmabuf" in refused.claims[other.uid].error
    assert [p for p in _spec_files(node_config) if other.uid in p.name] == []
    assert await _holders(services, "kvm") == ()
    assert await _holders(services, "udmabuf") == (holder.uid,)
    store = await _checkpoint_store(services)
    assert await store.get(subjects.checkpoint_key(node_config.node, other.uid)) is None
