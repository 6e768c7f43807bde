"""Every NATS subject each service answers, fed random bytes, wrong types, missing fields,
huge payloads and other messages' tags: a typed error or a clean reply, never a crash."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest
import yaml

from hostdev_bus import NatsBus
from hostdev_events import subjects
from hostdev_events.alloc import DeviceWant, Released, ReleaseDevices, Reserved, ReserveDevices
from hostdev_events.base import ErrorCode, ErrorReply
from hostdev_events.cdi import CdiSpecsRemoved, RemoveCdiSpecs
from hostdev_events.claims import ClaimRef, UnprepareClaims, UnprepareClaimsReply
from hostdev_events.dp import ReconcileAllocations, Reconciled
from hostdev_events.inventory import GetInventory, InventorySnapshot
from hostdev_testing import fuzz
from hostdev_testing.kubelet import KubeletSimulator
from hostdev_testing.kubelet_dp import DevicePluginKubelet
from hostdev_testing.services import NodeConfig, Services
from tests.fuzz.conftest import HandlerFailures

REPLY_DEADLINE = 20.0
RESOURCE = "hostdev.k8s.io/kvm"


def _offer_kvm_as_a_device_plugin_resource(config: Path) -> None:
    """With a device plugin resource the gateway also answers NATS (reconcile, restores)."""
    selection = yaml.safe_load(config.read_text())
    selection["resources"] = [{"name": RESOURCE, "devices": ["kvm"], "shares": 2}]
    config.write_text(yaml.safe_dump(selection))


async def _still_serves(service: str, bus: NatsBus, node: str) -> None:
    """A well-formed request to `service` gets its normal answer."""
    if service == "preparer":
        ref = ClaimRef(namespace="ns", name="n", uid="c0ffee00-0000-4000-8000-000000000000")
        message = UnprepareClaims(claims=(ref,), timeout_ms=5000)
        reply = await bus.request(subjects.claims_unprepare(node), message, UnprepareClaimsReply, 5)
        assert reply.errors == {ref.uid: ""}
    elif service == "allocator":
        want = ReserveDevices(owner="canary", devices=(DeviceWant(device="kvm"),))
        reserved = await bus.request(subjects.alloc_reserve(node), want, Reserved, 5)
        assert reserved.devices == ("kvm",)
        release = ReleaseDevices(owner="canary")
        released = await bus.request(subjects.alloc_release(node), release, Released, 5)
        assert released.devices == ("kvm",)
    elif service == "cdi-writer":
        remove = RemoveCdiSpecs(owner="canary")
        removed = await bus.request(subjects.cdi_remove(node), remove, CdiSpecsRemoved, 5)
        assert removed.paths == ()
    elif service == "discovery":
        snapshot = await bus.request(
            subjects.inventory_get(node), GetInventory(), InventorySnapshot, 5
        )
        assert "kvm" in {d.name for d in snapshot.devices}
    else:
        reconciled = await bus.request(
            subjects.dp_reconcile(node), ReconcileAllocations(), Reconciled, 10
        )
        assert not reconciled.released


@pytest.mark.parametrize("service", ["preparer", "allocator", "cdi-writer", "discovery", "gateway"])
async def test_every_subject_of_a_service_answers_fuzz_with_a_typed_error_or_a_reply(
    service: str,
    services: Services,
    node_config: NodeConfig,
    kubelet: KubeletSimulator,
    dp_kubelet: DevicePluginKubelet,
    handler_failures: HandlerFailures,
    short_dir: Path,
) -> None:
    """Each input on each of the service's subjects is answered within the deadline by one of
    the bus's messages: a reply, or an ErrorReply whose code is not `internal` (an exception
    no handler typed); events are taken without a logged handler failure. Afterwards the
    service answers a well-formed request, and nothing outside the CDI directory changed."""
    _offer_kvm_as_a_device_plugin_resource(node_config.devices_config)
    await services.start()
    # The gateway's sockets appear after its start; they are not the fuzz's doing.
    await kubelet.wait_for_driver(node_config.driver, timeout=10)
    await dp_kubelet.wait_registered(RESOURCE, timeout=10)
    routes = services.routes[service]
    assert routes, f"{service} subscribed no subject"
    skip = (node_config.cdi_root, node_config.workdir / f"{service}.log")
    before = fuzz.file_tree(short_dir, skip)
    nc = await nats.connect(node_config.nats_url, max_reconnect_attempts=0)
    try:
        for route in routes:

            async def check(
                payload: bytes, subject: str = route.subject, event: bool = route.every_instance
            ) -> None:
                if event:
                    await nc.publish(subject, payload)
                    await nc.flush()
                else:
                    reply = await nc.request(subject, payload, timeout=REPLY_DEADLINE)
                    answer = fuzz.decode_reply(reply.data)
                    if isinstance(answer, ErrorReply):
                        assert answer.code != ErrorCode.INTERNAL, (subject, payload[:200], answer)
                        assert answer.detail, (subject, payload[:200])
                assert not handler_failures.failures, handler_failures.failures

            name = f"nats {route.subject.split('.', 3)[-1]}"
            await fuzz.run_async(name, fuzz.payloads(route.request), check)
        await _still_serves(service, NatsBus(nc), node_config.node)
    finally:
        await nc.close()
    assert not handler_failures.failures, handler_failures.failures
    assert fuzz.file_tree(short_dir, skip) == before
