"""JSON encoding of bus messages with one cached decoder per expected type."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from hostdev_events.base import ErrorReply, Message

M = TypeVar("M", bound=Message)
T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def encode(value: Any) -> bytes:
    """Encode a Struct (or anything msgspec encodes) as JSON."""
    return _encoder.encode(value)


_decoders: dict[object, msgspec.json.Decoder[Any]] = {}
_reply_decoders: dict[object, msgspec.json.Decoder[Any]] = {}


def decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    """The decoder for one expected type, built once."""
    found = _decoders.get(kind)
    if found is None:
        found = _decoders[kind] = msgspec.json.Decoder(kind)
    return found


def reply_decoder(kind: type[M]) -> msgspec.json.Decoder[M | ErrorReply]:
    """Decoder for a reply that is either the expected message or an ErrorReply."""
    found = _reply_decoders.get(kind)
    if found is None:
        found = _reply_decoders[kind] = msgspec.json.Decoder(kind | ErrorReply)
    return found
