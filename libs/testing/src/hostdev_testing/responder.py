"""A responder of test messages on the real nats-server, served by the runner as every
service's routes are, for tests of the bus and the runner themselves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hostdev_bus import codec
from hostdev_events import subjects
from hostdev_events.base import ErrorCode, ErrorReply, Message
from hostdev_runtime.errors import HandlerError
from hostdev_runtime.runner import Route, ServiceContext, run_service
from hostdev_runtime.settings import CommonSettings


class Echo(Message, frozen=True, tag="test.echo.v1"):
    """Answer `text` back; `wait`: only once the echoer's gate opens; `pad`: with that many
    bytes of padding; `fail`: with this typed error instead."""

    text: str
    wait: bool = False
    pad: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0
    fail: ErrorCode | None = None


class Echoed(Message, frozen=True, tag="test.echoed.v1"):
    text: str
    padding: str = ""


@dataclass
class Echoer:
    """The handler: records what it handled, in order, and holds `wait` requests at `gate`."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    handled: list[str] = field(default_factory=list)
    waiting: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, request: Echo) -> Echoed:
        self.handled.append(request.text)
        self.arrived.set()
        if request.wait:
            self.waiting += 1
            try:
                await self.gate.wait()
            finally:
                self.waiting -= 1
        if request.fail is not None:
            raise HandlerError(request.fail, f"refused {request.text}")
        return Echoed(text=request.text, padding="z" * request.pad)


async def settled(client: NatsClient) -> None:
    """Return once the server has taken every command `client` queued (a subscribe, an
    unsubscribe). nats-py's flush() does not tell: it writes its PING straight to the
    socket, ahead of the commands still queued for its flusher task; a message does not
    overtake them."""
    probe = client.new_inbox()
    sub = await client.subscribe(probe)
    await client.publish(probe, b"")
    await sub.next_msg(timeout=10)
    await sub.unsubscribe()


@contextlib.asynccontextmanager
async def serving(nats_url: str, node: str, routes: Sequence[Route[Any]]) -> AsyncIterator[None]:
    """`routes` served by the runner on `node` until the block ends."""
    client = await nats.connect(nats_url)
    stopping = asyncio.Event()
    service: asyncio.Task[None] | None = None
    try:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def on_ready(_: Msg) -> None:
            if not ready.done():
                ready.set_result(None)

        await client.subscribe(subjects.service_ready(node), cb=on_ready)
        await settled(client)

        async def app(_: ServiceContext) -> Sequence[Route[Any]]:
            return routes

        settings = CommonSettings(node_name=node, nats_url=nats_url)
        service = asyncio.create_task(run_service("test-responder", settings, app, stopping))
        async with asyncio.timeout(10):
            await asyncio.wait({service, ready}, return_when=asyncio.FIRST_COMPLETED)
        if service.done():
            service.result()  # it failed to start: raise why
        yield
    finally:
        stopping.set()
        if service is not None:
            async with asyncio.timeout(15):
                await asyncio.wait({service})
        await client.close()


@contextlib.asynccontextmanager
async def answering_plain_only(nats_url: str, subject: str, echoer: Echoer) -> AsyncIterator[None]:
    """A responder that predates batches: its messages decode as Echo or are MALFORMED."""
    client = await nats.connect(nats_url)
    decoder = codec.decoder(Echo)

    async def on_message(msg: Msg) -> None:
        reply: Message
        try:
            request = decoder.decode(msg.data)
        except Exception as err:
            reply = ErrorReply(code=ErrorCode.MALFORMED, detail=f"not a Echo: {err}")
        else:
            try:
                reply = await echoer(request)
            except HandlerError as err:
                reply = ErrorReply(code=err.code, detail=err.detail)
        await msg.respond(codec.encode(reply))

    try:
        await client.subscribe(subject, cb=on_message)
        await settled(client)
        yield
    finally:
        await client.close()
