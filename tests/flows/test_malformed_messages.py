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
