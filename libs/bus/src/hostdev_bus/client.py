"""The Bus seam (request with deadline, publish) and its NATS implementation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, TypeVar

import nats
import nats.errors
from nats.aio.client import Client as NatsClient

from hostdev_bus import codec, tracing
from hostdev_bus.errors import (
    MalformedReply,
    PayloadTooLarge,
    RemoteError,
    RequestTimeout,
    Unavailable,
)
from hostdev_events import killpoints
from hostdev_events.base import ErrorReply, Message

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=Message)


class Bus(Protocol):
    """What handlers need from NATS: typed request/reply and publish."""

    async def request(self, subject: str, message: Message, reply: type[R], timeout: float) -> R:
        """Send `message`, wait at most `timeout` seconds for a `reply`.

        Raises RemoteError for an ErrorReply, RequestTimeout, Unavailable or MalformedReply.
        """
        ...

    async def publish(self, subject: str, message: Message) -> None:
        """Fire-and-forget an event."""
        ...


class NatsBus:
    """Bus over a nats-py connection; carries the trace context in headers."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc

    async def request(self, subject: str, message: Message, reply: type[R], timeout: float) -> R:
        payload = codec.encode(message)
        try:
            msg = await self.nc.request(
                subject, payload, timeout=max(timeout, 0.001), headers=_trace_headers()
            )
        except nats.errors.MaxPayloadError as err:
            raise PayloadTooLarge(subject, len(payload)) from err
        except nats.errors.NoRespondersError as err:
            raise Unavailable(subject, "no responders") from err
        except nats.errors.TimeoutError as err:
            raise RequestTimeout(subject, timeout) from err
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError) as err:
            raise Unavailable(subject, f"not connected to NATS: {err}") from err
        killpoints.reached(killpoints.NATS_REQUEST)
        return decode_reply(subject, msg.data, reply)

    async def publish(self, subject: str, message: Message) -> None:
        payload = codec.encode(message)
        try:
            await self.nc.publish(subject, payload, headers=_trace_headers())
        except nats.errors.MaxPayloadError as err:
            raise PayloadTooLarge(subject, len(payload)) from err


def _trace_headers() -> dict[str, str] | None:
    """The trace context as headers; None when there is none (tracing off): nats-py sends
    any headers given, even none, as a header block every receiver has to parse."""
    return tracing.inject() or None


def decode_reply(subject: str, data: bytes, reply: type[R]) -> R:
    """Decode a reply as `reply`, raising RemoteError for an ErrorReply."""
    try:
        decoded: R | ErrorReply = codec.reply_decoder(reply).decode(data)
    except Exception as err:  # msgspec raises DecodeError or ValidationError
        raise MalformedReply(subject, str(err)) from err
    if isinstance(decoded, ErrorReply):
        raise RemoteError(decoded.code, decoded.detail, subject)
    return decoded


def inbox_prefix(service: str) -> str:
    """The reply subjects of one service: its own, so NATS permissions can keep replies
    meant for one service away from the others."""
    return f"_INBOX_{service}"


async def connect(
    url: str,
    name: str,
    on_disconnect: Callable[[], None] | None = None,
    on_reconnect: Callable[[], None] | None = None,
    inbox: str = "_INBOX",
) -> NatsClient:
    """Connect to NATS, reconnecting forever: a node's leaf may restart under us."""

    async def on_error(err: Exception) -> None:
        logger.warning("nats error", extra={"error": str(err)})

    async def on_disconnected() -> None:
        logger.warning("nats disconnected")
        if on_disconnect is not None:
            on_disconnect()

    async def on_reconnected() -> None:
        logger.info("nats reconnected")
        if on_reconnect is not None:
            on_reconnect()

    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        allow_reconnect=True,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
        inbox_prefix=inbox,
    )
