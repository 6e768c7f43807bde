"""JetStream publishes sent without waiting for each answer, their acks matched on one inbox.

nats-py's `publish_async` would do this, but its reply handler raises instead of failing the
future when JetStream refuses a write (a lost compare-and-set), so that future never
completes; compare-and-set writes need the refusal. This uses only the client's public
calls: one wildcard subscription on a fresh inbox, one reply subject per publish.
"""

from __future__ import annotations

import asyncio
import itertools

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from hostdev_bus.errors import MalformedReply, Unavailable

_STATUS = "Status"
_NO_RESPONDERS = "503"  # the server's answer when no stream takes the subject


class ApiError(msgspec.Struct, frozen=True):
    """A JetStream refusal: `err_code` says which (10071: wrong last sequence)."""

    code: int = 0
    err_code: int = 0
    description: str = ""


class PubAck(msgspec.Struct, frozen=True):
    """JetStream's answer to a publish: the stored sequence, or why it was refused."""

    seq: int = 0
    error: ApiError | None = None


_decode_ack = msgspec.json.Decoder(PubAck).decode


class PublishAcks:
    """Publishes to JetStream subjects; each returns a future of the server's PubAck."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = ""
        self._tokens = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[PubAck]] = {}

    async def publish(
        self, subject: str, data: bytes, headers: dict[str, str]
    ) -> asyncio.Future[PubAck]:
        """Send one message; the future completes with its ack (or Unavailable when no
        stream takes the subject). A future given up on is passed to `forget`."""
        if not self._prefix:
            prefix = self._nc.new_inbox() + "."
            await self._nc.subscribe(prefix + "*", cb=self._answer)
            self._prefix = prefix
        token = str(next(self._tokens))
        future: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        future.add_done_callback(lambda _: self._waiting.pop(token, None))
        try:
            await self._nc.publish(subject, data, reply=self._prefix + token, headers=headers)
        except BaseException:
            future.cancel()
            raise
        return future

    def forget(self, futures: list[asyncio.Future[PubAck]]) -> None:
        """Stop waiting for these answers (a deadline passed, or the caller failed)."""
        for future in futures:
            future.cancel()  # its done callback drops the token

    async def _answer(self, msg: Msg) -> None:
        future = self._waiting.get(msg.subject[len(self._prefix) :])
        if future is None or future.done():
            return  # an answer to a publish given up on
        if msg.headers and msg.headers.get(_STATUS) == _NO_RESPONDERS:
            future.set_exception(Unavailable(msg.subject, "no stream takes the subject"))
            return
        try:
            future.set_result(_decode_ack(msg.data))
        except msgspec.DecodeError as err:
            future.set_exception(MalformedReply(msg.subject, str(err)))
