"""prepare, unprepare and claims against the real services on real NATS, with the API emulator."""

from __future__ import annotations

import uuid
from pathlib import Path

from hostdev_testing.cli import hostdev
from hostdev_testing.cluster import Allocated, Cluster
from hostdev_testing.services import NodeConfig, Services

BOOT_ID = "/proc/sys/kernel/random/boot_id"


def _boot(config: NodeConfig, boot_id: str) -> Path:
    """The node's boot ID file under its root, where the preparer and the command read it."""
    path = config.root / BOOT_ID.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(boot_id + "\n")
    return path


async def _start(services: Services, config: NodeConfig, boot_id: str) -> None:
    services.extra_env["HOSTDEV_BOOT_ID_FILE"] = str(_boot(config, boot_id))
    await services.start()


def _gateway_flags(config: NodeConfig) -> list[str | Path]:
    return [
        "--kube-api-url",
        config.api_url,
        "--plugins-dir",
        config.plugins_dir,
        "--driver",
        config.driver,
    ]


def _claims_flags(config: NodeConfig) -> list[str | Path]:
    return ["--nats", config.nats_url, "--node", config.node, "--root", config.root]


def _specs(config: NodeConfig) -> list[Path]:
    return sorted(config.cdi_root.glob("*.json")) if config.cdi_root.exists() else []


async def test_prepare_then_claims_then_unprepare_through_the_gateway(
    services: Services, node_config: NodeConfig, cluster: Cluster
) -> None:
    """prepare reads the UID from the API and gets the CDI ID; claims shows the checkpoint
    completed in this boot; unprepare removes the spec and the checkpoint."""
    boot_id = str(uuid.uuid4())
    await _start(services, node_config, boot_id)
    claim = await cluster.allocated_claim(
        "default", "render", [Allocated("gpu", "dev-dri-renderd128")]
    )

    prepared = await hostdev("prepare", "default/render", *_gateway_flags(node_config), "--json")
    assert prepared.code == 0, prepared.err
    assert prepared.json() == {
        "claim": "default/render",
        "uid": claim.uid,
        "operation": "prepare",
        "error": "",
        "devices": [
            {
                "requests": ["gpu"],
                "pool": node_config.node,
                "device": "dev-dri-renderd128",
                "cdiDeviceIDs": [f"k8s.{node_config.driver}/device={claim.uid}-dev-dri-renderd128"],
            }
        ],
    }
    assert len(_specs(node_config)) == 1

    listed = await hostdev("claims", *_claims_flags(node_config), "--json")
    assert listed.code == 0, listed.err
    (record,) = listed.json()
    assert record["checkpoint"]["claim"] == {
        "namespace": "default",
        "name": "render",
        "uid": claim.uid,
    }
    assert record["checkpoint"]["step"] == "completed"
    assert [d["device"] for d in record["checkpoint"]["devices"]] == ["dev-dri-renderd128"]
    assert record["thisBoot"] is True
    assert 0 <= record["ageSeconds"] < 60
    table = (await hostdev("claims", *_claims_flags(node_config))).out
    assert f"default/render  {claim.uid}  completed  dev-dri-renderd128" in table
    assert f"{boot_id} (this boot)" in table

    unprepared = await hostdev("unprepare", "default/render", *_gateway_flags(node_config))
    assert unprepared.code == 0, unprepared.err
    assert unprepared.out == f"default/render ({claim.uid}): unprepared\n"
    assert _specs(node_config) == []
    assert (await hostdev("claims", *_claims_flags(node_config), "--json")).json() == []


async def test_claims_after_a_reboot_marks_the_checkpoint_from_an_earlier_boot(
    services: Services, node_config: NodeConfig, cluster: Cluster
) -> None:
    """A new boot ID on the node makes the completed claim's boot an earlier one."""
    first_boot = str(uuid.uuid4())
    await _start(services, node_config, first_boot)
    await cluster.allocated_claim("default", "vm", [Allocated("kvm", "kvm")])
    assert (await hostdev("prepare", "default/vm", *_gateway_flags(node_config))).code == 0
    _boot(node_config, str(uuid.uuid4()))
    table = (await hostdev("claims", *_claims_flags(node_config))).out
    assert f"{first_boot} (earlier boot)" in table
    doctor = await hostdev("doctor", *_claims_flags(node_config), "--json")
    (check,) = [c for c in doctor.json() if c["check"] == "checkpoints"]
    assert check["status"] == "warn"
    assert "1 completed in an earlier boot" in check["detail"]


async def test_a_refused_prepare_prints_the_drivers_error_and_exits_1(
    services: Services, node_config: NodeConfig, cluster: Cluster
) -> None:
    """An exclusive device held by another claim: the gateway's per-claim error, exit 1."""
    await _start(services, node_config, str(uuid.uuid4()))
    holder = await cluster.allocated_claim("default", "a", [Allocated("dev", "udmabuf")])
    await cluster.allocated_claim("default", "b", [Allocated("dev", "udmabuf")])
    assert (await hostdev("prepare", "default/a", *_gateway_flags(node_config))).code == 0
    refused = await hostdev("prepare", "default/b", *_gateway_flags(node_config))
    assert refused.code == 1
    assert refused.out.startswith("default/b (")
    assert "prepare failed:" in refused.out
    assert holder.uid in refused.out


async def test_unprepare_by_uid_works_when_the_claim_is_gone_from_the_api(
    services: Services, node_config: NodeConfig, cluster: Cluster
) -> None:
    """--uid skips the API server: a deleted claim's leftovers can still be unprepared."""
    await _start(services, node_config, str(uuid.uuid4()))
    claim = await cluster.allocated_claim("default", "gone", [Allocated("dev", "udmabuf")])
    assert (await hostdev("prepare", "default/gone", *_gateway_flags(node_config))).code == 0
    await cluster.call("DELETE", "/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/gone")
    flags: list[str | Path] = [
        "--plugins-dir",
        node_config.plugins_dir,
        "--driver",
        node_config.driver,
    ]
    ran = await hostdev("unprepare", "default/gone", "--uid", claim.uid, *flags)
    assert ran.code == 0, ran.err
    assert _specs(node_config) == []


async def test_prepare_of_a_claim_that_does_not_exist_is_exit_2(
    services: Services, node_config: NodeConfig, cluster: Cluster
) -> None:
    """The API's 404 is bad input: one line naming the claim."""
    ran = await hostdev("prepare", "default/nope", *_gateway_flags(node_config))
    assert (ran.code, ran.err) == (2, "hostdev prepare: ResourceClaim default/nope not found\n")


async def test_prepare_without_a_gateway_socket_says_so_and_exits_1(
    node_config: NodeConfig, cluster: Cluster
) -> None:
    """No gateway running: the socket path and the likely cause, exit 1."""
    await cluster.allocated_claim("default", "x", [Allocated("dev", "udmabuf")])
    ran = await hostdev("prepare", "default/x", *_gateway_flags(node_config))
    socket = node_config.plugins_dir / node_config.driver / "dra.sock"
    assert (ran.code, ran.err) == (
        1,
        f"hostdev prepare: {socket}: no gateway socket (is the gateway running on this node?)\n",
    )


async def test_a_claim_argument_without_a_namespace_is_exit_2() -> None:
    """NAMESPACE/NAME is required as such."""
    ran = await hostdev("prepare", "render")
    assert (ran.code, ran.err) == (
        2,
        "hostdev prepare: 'render': give the claim as NAMESPACE/NAME\n",
    )
