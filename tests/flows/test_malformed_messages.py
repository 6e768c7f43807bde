"""Malformed NATS messages get a typed error reply, and the service keeps serving."""

from __future__ import annotations

import msgspec
import nats
import pytest

from hostdev_bus import NatsBus, RemoteError
from hostdev_events import subjects
from hostdev_events.alloc import DeviceWant, Released, ReleaseDevices, Reserved, ReserveDevices
from hostdev_events.base import ErrorCode, ErrorReply
from hostdev_events.cdi import RemoveCdiSpecs, WriteCdiSpecs
from hostdev_events.claims import ClaimRef, UnprepareClaims, UnprepareClaimsReply
from hostdev_events.dp import AllocateDevices, DpAllocation
from hostdev_testing.services import NodeConfig, Services

GARBAGE = [
    b"",
    b"not json",
    b'{"type":"claims.prepare.v1"}',
    b'{"type":"something.else.v9"}',
    b"[1,2]",
]


@pytest.mark.parametrize("payload", GARBAGE)
@pytest.mark.parametrize("subject", ["claims_prepare", "alloc_reserve", "cdi_write"])
async def test_malformed_request_gets_malformed_error_reply(
    services: Services, node_config: NodeConfig, subject: str, payload: bytes
) -> None:
    """Undecodable or wrongly typed payloads are answered with ErrorReply(code=malformed)."""
    await services.start("preparer", "allocator", "cdi-writer")
    nc = await nats.connect(node_config.nats_url)
    try:
        reply = await nc.request(getattr(subjects, subject)(node_config.node), payload, timeout=5)
        error = msgspec.json.decode(reply.data, type=ErrorReply)
        assert error.code == ErrorCode.MALFORMED
        assert error.detail
    finally:
        await nc.close()


async def test_services_keep_serving_after_malformed_messages(
    services: Services, node_config: NodeConfig
) -> None:
    """After garbage on every subject, well-formed requests still get real answers."""
    await services.start("preparer", "allocator", "cdi-writer")
    node = node_config.node
    nc = await nats.connect(node_config.nats_url)
    bus = NatsBus(nc)
    try:
        for subject in (
            subjects.claims_unprepare(node),
            subjects.alloc_reserve(node),
            subjects.cdi_remove(node),
        ):
            for payload in GARBAGE:
                await nc.request(subject, payload, timeout=5)
        ref = ClaimRef(namespace="ns", name="n", uid="c0ffee00-0000-4000-8000-000000000000")
        unprepared = await bus.request(
            subjects.claims_unprepare(node),
            UnprepareClaims(claims=(ref,), timeout_ms=5000),
            UnprepareClaimsReply,
            5,
        )
        assert unprepared.errors == {ref.uid: ""}
        reserved = await bus.request(
            subjects.alloc_reserve(node),
            ReserveDevices(owner="o1", devices=(DeviceWant(device="kvm"),)),
            Reserved,
            5,
        )
        assert reserved.devices == ("kvm",)
        released = await bus.request(
            subjects.alloc_release(node), ReleaseDevices(owner="o1"), Released, 5
        )
        assert released.devices == ("kvm",)
    finally:
        await nc.close()


async def test_cdi_writer_rejects_path_tricks_in_owner_and_invalid_specs(
    services: Services, node_config: NodeConfig
) -> None:
    """An owner that would escape the CDI directory, or a spec CDI forbids, is refused as invalid."""
    await services.start("cdi-writer")
    bus = NatsBus(await nats.connect(node_config.nats_url))
    try:
        for owner in ("../../etc/passwd", "a/b", "..", ""):
            with pytest.raises(RemoteError) as refused:
                await bus.request(
                    subjects.cdi_remove(node_config.node), RemoveCdiSpecs(owner=owner), Released, 5
                )
            assert refused.value.code == ErrorCode.INVALID
        bad_spec = msgspec.Raw(
            b'{"cdiVersion":"0.3.0","kind":"k8s.hostdev.k8s.io/device","devices":[]}'
        )
        with pytest.raises(RemoteError) as invalid:
            await bus.request(
                subjects.cdi_write(node_config.node),
                WriteCdiSpecs(owner="c1", specs=(bad_spec,)),
                Released,
                5,
            )
        assert invalid.value.code == ErrorCode.INVALID
        assert not node_config.cdi_root.exists() or list(node_config.cdi_root.iterdir()) == []
    finally:
        await bus.nc.close()


async def test_an_error_reply_larger_than_max_payload_is_cut_to_a_typed_error_that_fits(
    services: Services, node_config: NodeConfig
) -> None:
    """A dp.allocate just under max_payload whose error text quotes its 1 MB resource name
    and each of its IDs: the answer outgrows the request. It comes back as the same typed
    error with its detail cut, where the oversized reply was dropped and the requester
    waited for nothing; the preparer then still answers."""
    await services.start("allocator", "cdi-writer", "discovery", "preparer")
    nc = await nats.connect(node_config.nats_url)
    try:
        allocations = tuple(DpAllocation(id=f"id{i}", device="absent") for i in range(20))

        def request(size: int) -> bytes:
            message = AllocateDevices(resource="r" * size, allocations=allocations, timeout_ms=5)
            return msgspec.json.encode(message)

        payload = request(nc.max_payload - len(request(0)) - 16)
        assert nc.max_payload - 16 <= len(payload) <= nc.max_payload
        reply = await nc.request(subjects.dp_allocate(node_config.node), payload, timeout=10)
        assert len(reply.data) <= nc.max_payload
        error = msgspec.json.decode(reply.data, type=ErrorReply)
        assert error.code == ErrorCode.CONFLICT  # what dp.allocate answers for absent devices
        assert error.detail.startswith("rrrr")
        assert f"more than the NATS max_payload of {nc.max_payload}" in error.detail
        unprepared = await NatsBus(nc).request(
            subjects.claims_unprepare(node_config.node),
            UnprepareClaims(claims=(ClaimRef(namespace="n", name="n", uid="u1"),), timeout_ms=5000),
            UnprepareClaimsReply,
            5,
        )
        assert unprepared.errors == {"u1": ""}
    finally:
        await nc.close()


async def test_a_device_name_too_long_for_a_kv_key_is_refused_and_the_allocator_keeps_serving(
    services: Services, node_config: NodeConfig
) -> None:
    """A reserve naming a 70,000-character device: its ledger key would make a subject
    longer than nats-server's protocol line, and the server closed the allocator's
    connection (the requester waited for nothing, the next ones found no responder).
    Now the name is refused as invalid before any KV call, and the allocator serves on."""
    await services.start("allocator")
    bus = NatsBus(await nats.connect(node_config.nats_url))
    node = node_config.node
    try:
        with pytest.raises(RemoteError) as refused:
            await bus.request(
                subjects.alloc_reserve(node),
                ReserveDevices(owner="o1", devices=(DeviceWant(device="y" * 70_000),)),
                Reserved,
                5,
            )
        assert refused.value.code == ErrorCode.INVALID
        assert "70000 characters" in refused.value.detail
        for owner in ("o2", "o3"):
            reserved = await bus.request(
                subjects.alloc_reserve(node),
                ReserveDevices(owner=owner, devices=(DeviceWant(device="kvm", shareable=True),)),
                Reserved,
                5,
            )
            assert reserved.devices == ("kvm",)
    finally:
        await bus.nc.close()


async def test_a_ledger_value_grown_past_max_payload_is_refused_as_invalid(
    services: Services, node_config: NodeConfig
) -> None:
    """Two owners of 600 kB each sharing a device: the device's ledger value would hold both
    names, 1.2 MB, more than NATS carries. The write is refused as invalid, where the
    client's MaxPayloadError escaped as an internal error; the first holder keeps its hold."""
    await services.start("allocator")
    bus = NatsBus(await nats.connect(node_config.nats_url))
    node = node_config.node
    shared = (DeviceWant(device="kvm", shareable=True),)
    try:
        first = await bus.request(
            subjects.alloc_reserve(node),
            ReserveDevices(owner="a" * 600_000, devices=shared),
            Reserved,
            5,
        )
        assert first.devices == ("kvm",)
        with pytest.raises(RemoteError) as refused:
            await bus.request(
                subjects.alloc_reserve(node),
                ReserveDevices(owner="b" * 600_000, devices=shared),
                Reserved,
                5,
            )
        assert refused.value.code == ErrorCode.INVALID
        assert "max_payload" in refused.value.detail
        released = await bus.request(
            subjects.alloc_release(node), ReleaseDevices(owner="a" * 600_000), Released, 5
        )
        assert released.devices == ("kvm",)
    finally:
        await bus.nc.close()
