"""Several requests to one subject carried as one message, and their replies as one.

Every NATS message costs both ends a send, a wake-up and a dispatch, whatever it carries.
A requester with concurrent requests to one subject may send them as one `Batch`; the
responder answers each item exactly as it would answer it alone, concurrently, and sends
one `BatchReply` with one entry per item, in order. Items belong to different callers (a
claim each, say), so each carries its own trace context.

A Batch is refused as a whole (one ErrorReply instead of the BatchReply) when it holds a
Batch or more than MAX_ITEMS items, or when its reply would not fit in one NATS message; a
responder that predates batches answers it `malformed`. A requester then sends each item
again by itself.
"""

from __future__ import annotations

import msgspec

from hostdev_events.base import Message

# The most items a responder takes in one Batch; a requester keeps its batches smaller.
MAX_ITEMS = 256


class BatchItem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One request: its message as it would be sent alone, and its caller's W3C trace
    context (`traceparent`, `tracestate`: what a lone message carries in its headers)."""

    request: msgspec.Raw
    trace: dict[str, str] = {}


class Batch(Message, frozen=True, tag="batch.v1"):
    """Requests to the subject this is sent to, each to be answered as if it came alone."""

    items: tuple[BatchItem, ...]


class BatchReply(Message, frozen=True, tag="batch.reply.v1"):
    """Per item of the Batch, in its order, the encoded reply or ErrorReply it got; `null`
    for an item its handler answered nothing (as a lone message, it got no reply)."""

    replies: tuple[msgspec.Raw, ...]
