"""`hostdev prepare` / `unprepare`: read the claim, then call the gateway as the kubelet does."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from hostdev_cli.errors import InputError, OperationFailed
from hostdev_cli.output import table
from hostdev_kube import AccessError, Kube, KubeError, NotFound
from hostdev_kubelet_pb.dra.v1 import api_pb2 as dra
from hostdev_kubelet_pb.dra.v1 import api_pb2_grpc as dra_grpc

DEFAULT_PLUGINS_DIR = "/var/lib/kubelet/plugins"
CALL_SECONDS = 60.0  # the kubelet's own deadline for these calls is longer; a minute is plenty


@dataclass(frozen=True, slots=True)
class ClaimName:
    """NAMESPACE/NAME as the operator typed it, with the UID the kubelet would send."""

    namespace: str
    name: str
    uid: str = ""


@dataclass(frozen=True, slots=True)
class Result:
    """The gateway's answer for one claim."""

    claim: ClaimName
    error: str
    devices: list[dict[str, Any]] = field(default_factory=list)


def parse_claim(text: str) -> ClaimName:
    """NAMESPACE/NAME, refusing anything else."""
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise InputError(f"{text!r}: give the claim as NAMESPACE/NAME")
    return ClaimName(namespace, name)


def plugins_dir(given: str | None) -> Path:
    """--plugins-dir, else $HOSTDEV_PLUGINS_DIR (as the gateway reads it), else the kubelet's."""
    return Path(given or os.environ.get("HOSTDEV_PLUGINS_DIR") or DEFAULT_PLUGINS_DIR)


def find_socket(directory: Path, driver: str) -> Path:
    """The gateway's DRA socket; during a rolling update there may be one per pod."""
    default = directory / driver / "dra.sock"
    if default.exists():
        return default
    found = sorted((directory / driver).glob("dra-*.sock"))
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(str(p) for p in found)
        raise InputError(f"several gateway sockets ({names}); pick one with --socket")
    raise OperationFailed(f"{default}: no gateway socket (is the gateway running on this node?)")


async def resolve(claim: ClaimName, kube_api_url: str) -> ClaimName:
    """The claim's UID from the API server (URL, in-cluster, or kubeconfig)."""
    try:
        kube = await Kube.connect(kube_api_url)
    except AccessError as err:
        raise OperationFailed(f"cannot reach the API server: {err}") from err
    try:
        found = await kube.get_claim(claim.namespace, claim.name)
    except NotFound as err:
        raise InputError(f"ResourceClaim {claim.namespace}/{claim.name} not found") from err
    except KubeError as err:
        raise OperationFailed(
            f"reading ResourceClaim {claim.namespace}/{claim.name}: {err}"
        ) from err
    finally:
        await kube.close()
    if found.status.allocation is None:
        raise OperationFailed(
            f"ResourceClaim {claim.namespace}/{claim.name} is not allocated; the kubelet "
            "would not prepare it either"
        )
    return ClaimName(claim.namespace, claim.name, found.metadata.uid)


async def call(socket: Path, claim: ClaimName, *, unprepare: bool) -> Result:
    """NodePrepareResources or NodeUnprepareResources (DRA v1) with one claim."""
    request_claim = dra.Claim(namespace=claim.namespace, name=claim.name, uid=claim.uid)
    method = "NodeUnprepareResources" if unprepare else "NodePrepareResources"
    async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
        stub = dra_grpc.DRAPluginStub(channel)
        try:
            if unprepare:
                done = await stub.NodeUnprepareResources(
                    dra.NodeUnprepareResourcesRequest(claims=[request_claim]), timeout=CALL_SECONDS
                )
                return Result(
                    claim,
                    done.claims[claim.uid].error
                    if claim.uid in done.claims
                    else "no answer for this claim",
                )
            prepared = await stub.NodePrepareResources(
                dra.NodePrepareResourcesRequest(claims=[request_claim]), timeout=CALL_SECONDS
            )
        except grpc.aio.AioRpcError as err:
            raise OperationFailed(
                f"{method} on {socket}: {err.code().name}: {err.details()}"
            ) from err
    if claim.uid not in prepared.claims:
        return Result(claim, "no answer for this claim")
    answer = prepared.claims[claim.uid]
    devices = [
        {
            "requests": list(d.request_names),
            "pool": d.pool_name,
            "device": d.device_name,
            "cdiDeviceIDs": list(d.cdi_device_ids),
        }
        for d in answer.devices
    ]
    return Result(claim, answer.error, devices)


def to_data(result: Result, unprepare: bool) -> dict[str, Any]:
    """Plain data for --json / --yaml."""
    data: dict[str, Any] = {
        "claim": f"{result.claim.namespace}/{result.claim.name}",
        "uid": result.claim.uid,
        "operation": "unprepare" if unprepare else "prepare",
        "error": result.error,
    }
    if not unprepare:
        data["devices"] = result.devices
    return data


def render(result: Result, unprepare: bool) -> str:
    """One line of verdict, then the prepared devices."""
    name = f"{result.claim.namespace}/{result.claim.name} ({result.claim.uid})"
    if result.error:
        return f"{name}: {'unprepare' if unprepare else 'prepare'} failed: {result.error}"
    if unprepare:
        return f"{name}: unprepared"
    rows = [
        (",".join(d["requests"]), d["pool"], d["device"], " ".join(d["cdiDeviceIDs"]))
        for d in result.devices
    ]
    return f"{name}: prepared\n" + table(("REQUEST", "POOL", "DEVICE", "CDI DEVICE IDS"), rows)
