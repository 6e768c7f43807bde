"""Messages round-trip as tagged JSON; a reader skips fields it does not know."""

from __future__ import annotations

import msgspec
import pytest

from hostdev_events.base import ErrorCode, ErrorReply
from hostdev_events.claims import (
    ClaimOutcome,
    ClaimRef,
    PrepareClaims,
    PrepareClaimsReply,
    PreparedDevice,
)
from hostdev_events.inventory import Attribute, Device
from hostdev_events.state import Checkpoint, ClaimStep


def test_prepare_request_round_trips_with_its_tag() -> None:
    """The tag names the schema version and decoding yields an equal Struct."""
    msg = PrepareClaims(claims=(ClaimRef(namespace="a", name="b", uid="c"),), timeout_ms=100)
    raw = msgspec.json.encode(msg)
    assert b'"type":"claims.prepare.v1"' in raw
    assert msgspec.json.decode(raw, type=PrepareClaims) == msg


def test_reply_or_error_decodes_to_the_right_type() -> None:
    """A decoder for `Reply | ErrorReply` tells the two apart by tag."""
    decoder = msgspec.json.Decoder(PrepareClaimsReply | ErrorReply)
    error = decoder.decode(msgspec.json.encode(ErrorReply(code=ErrorCode.CONFLICT, detail="x")))
    assert isinstance(error, ErrorReply)
    assert error.code is ErrorCode.CONFLICT
    reply = PrepareClaimsReply(
        outcomes={
            "u": ClaimOutcome(devices=(PreparedDevice(request_names=("r",), pool="p", device="d"),))
        }
    )
    assert decoder.decode(msgspec.json.encode(reply)) == reply


def test_newer_fields_are_ignored_by_older_readers() -> None:
    """A field added by a newer writer does not break this reader (compatible evolution)."""
    raw = b'{"type":"claims.prepare.v1","claims":[],"timeout_ms":5,"priority":"high"}'
    assert msgspec.json.decode(raw, type=PrepareClaims).timeout_ms == 5


def test_wrong_tag_is_a_validation_error() -> None:
    """Another message's tag does not decode as this type."""
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"type":"alloc.reserve.v1"}', type=PrepareClaims)


def test_attribute_uses_kubernetes_keys() -> None:
    """Attributes encode as the API's {"int": ...}/{"bool": ...} objects."""
    device = Device(
        name="d", family="f", attributes={"n": Attribute(int_=3), "b": Attribute(bool_=True)}
    )
    assert msgspec.to_builtins(device.attributes) == {"n": {"int": 3}, "b": {"bool": True}}


def test_checkpoint_without_outcome_round_trips() -> None:
    """A preparing checkpoint omits the outcome and keeps its step."""
    cp = Checkpoint(claim=ClaimRef(namespace="a", name="b", uid="c"), step=ClaimStep.PREPARING)
    assert msgspec.json.decode(msgspec.json.encode(cp), type=Checkpoint) == cp
