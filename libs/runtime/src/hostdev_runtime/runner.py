"""The only main loop: subscribe routes, dispatch to typed handlers, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import context as otel_context
from opentelemetry import trace

from hostdev_bus import NatsBus, codec, connect, inbox_prefix, tracing
from hostdev_events import killpoints, subjects
from hostdev_events.base import ErrorCode, ErrorReply, Message
from hostdev_events.batch import MAX_ITEMS, Batch, BatchReply
from hostdev_events.service import ServiceReady
from hostdev_runtime import http, telemetry
from hostdev_runtime.clock import SystemClock
from hostdev_runtime.errors import classify, describe
from hostdev_runtime.http import Readiness
from hostdev_runtime.metrics import Metrics
from hostdev_runtime.settings import CommonSettings

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("hostdev_runtime")

M = TypeVar("M", bound=Message)
_CLOCK = SystemClock()  # the time a message took, for its metric


@dataclass(frozen=True, slots=True)
class Route(Generic[M]):
    """One subject, the one type its messages must decode as, and its handler. A command's
    subject also takes a Batch of such messages (hostdev_events.batch)."""

    subject: str
    request: type[M]
    handler: Callable[[M], Awaitable[Message | None]]
    every_instance: bool = False  # events each instance must see; commands go to one of them


@dataclass(slots=True)
class ServiceContext:
    """What an app gets to build its dependencies and background tasks."""

    service: str
    settings: CommonSettings
    nc: NatsClient
    js: JetStreamContext
    bus: NatsBus
    tasks: asyncio.TaskGroup
    stack: contextlib.AsyncExitStack
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    background: list[asyncio.Task[None]] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)
    readiness: Readiness = field(default_factory=Readiness)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run background work for the life of the service; it is cancelled on stop."""
        self.background.append(self.tasks.create_task(work))


App = Callable[[ServiceContext], Awaitable[Sequence[Route[Any]]]]


def _decode(route: Route[M], data: bytes | msgspec.Raw) -> M | Batch | ErrorReply:
    """The request, a Batch (a command's subject takes either), or the MALFORMED error."""
    try:
        decoded: M | Batch = (
            codec.decoder(route.request)
            if route.every_instance  # events are published one by one, never batched
            else _or_batch(route.request)
        ).decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        return ErrorReply(code=ErrorCode.MALFORMED, detail=f"not a {route.request.__name__}: {err}")
    return decoded


@functools.cache
def _or_batch(request: type[M]) -> msgspec.json.Decoder[M | Batch]:
    return msgspec.json.Decoder(request | Batch)


async def _run(route: Route[M], request: M | ErrorReply) -> Message | None:
    """Run the handler and turn every failure into a typed ErrorReply."""
    if isinstance(request, ErrorReply):
        return request
    try:
        return await route.handler(request)
    except Exception as err:
        code = classify(err)
        if code == ErrorCode.INTERNAL:
            logger.exception("handler failed", extra={"subject": route.subject})
        return ErrorReply(code=code, detail=describe(err))


def _batch_items(route: Route[M], batch: Batch) -> list[M | ErrorReply] | ErrorReply:
    """Each item decoded as a lone message would be; an error for the whole batch when it
    holds too many items or a batch (a requester then sends its items one by one)."""
    if len(batch.items) > MAX_ITEMS:
        detail = f"a batch of {len(batch.items)} items: at most {MAX_ITEMS}"
        return ErrorReply(code=ErrorCode.INVALID, detail=detail)
    items: list[M | ErrorReply] = []
    for item in batch.items:
        decoded = _decode(route, item.request)
        if isinstance(decoded, Batch):
            return ErrorReply(code=ErrorCode.INVALID, detail="a batch inside a batch")
        items.append(decoded)
    return items


async def answer(route: Route[M], data: bytes) -> Message | None:
    """What the service answers to a message's bytes, as _dispatch does without its spans,
    metrics and size limit: what an in-memory bus in tests calls too."""
    decoded = _decode(route, data)
    if not isinstance(decoded, Batch):
        return await _run(route, decoded)
    items = _batch_items(route, decoded)
    if isinstance(items, ErrorReply):
        return items
    replies = await asyncio.gather(*(_run(route, item) for item in items))
    return BatchReply(replies=tuple(msgspec.Raw(_item_bytes(route, r)) for r in replies))


def _span(
    route: Route[Any], context: otel_context.Context, batch: int = 0
) -> contextlib.AbstractContextManager[trace.Span]:
    attributes: dict[str, str | int] = {
        telemetry.ATTR_MESSAGING_SYSTEM: "nats",
        telemetry.ATTR_MESSAGING_DESTINATION: route.subject,
    }
    if batch:
        attributes[telemetry.ATTR_MESSAGING_BATCH] = batch
    return tracer.start_as_current_span(
        f"process {route.request.__name__}",
        context=context,
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
    )


def _handled(
    route: Route[Any], reply: Message | None, span: trace.Span, metrics: Metrics, started: float
) -> None:
    """One request answered: its span's status, its metrics and its log line."""
    outcome = reply.code if isinstance(reply, ErrorReply) else "ok"
    if isinstance(reply, ErrorReply):
        span.set_status(trace.StatusCode.ERROR, reply.detail)
    elapsed = _CLOCK.monotonic() - started
    metrics.handled.labels(route.subject, str(outcome)).inc()
    metrics.handle_seconds.labels(route.subject).observe(elapsed)
    logger.info(
        "handled",
        extra={
            "subject": route.subject,
            "outcome": str(outcome),
            "duration_ms": round(elapsed * 1000, 3),
        },
    )


async def _dispatch(route: Route[Any], msg: Msg, metrics: Metrics, max_payload: int) -> None:
    started = _CLOCK.monotonic()
    decoded = _decode(route, msg.data)
    if isinstance(decoded, Batch):
        await _dispatch_batch(route, msg, decoded, metrics, max_payload)
        return
    with _span(route, tracing.extract(msg.headers)) as span:
        reply = await _run(route, decoded)
        if msg.reply and reply is not None:
            killpoints.reached(killpoints.NATS_REPLY)  # the work is done, the answer not sent
            payload = _fit(route, reply, _encode_reply(route, reply), max_payload)
            with contextlib.suppress(Exception):  # the requester may be gone; nothing to undo
                await msg.respond(payload)
        _handled(route, reply, span, metrics, started)


async def _dispatch_batch(
    route: Route[Any], msg: Msg, batch: Batch, metrics: Metrics, max_payload: int
) -> None:
    """Each item handled as a lone message (its own span in its caller's trace, its
    metrics), concurrently; one BatchReply, or one error for the whole batch."""
    items = _batch_items(route, batch)
    reply: Message
    if isinstance(items, ErrorReply):
        reply = items
        metrics.handled.labels(route.subject, str(items.code)).inc()
        logger.warning("batch refused", extra={"subject": route.subject, "detail": items.detail})
    else:
        replies = await asyncio.gather(
            *(
                _batch_item(route, request, item.trace, len(items), metrics)
                for request, item in zip(items, batch.items, strict=True)
            )
        )
        reply = BatchReply(replies=tuple(msgspec.Raw(r) for r in replies))
    if msg.reply:
        killpoints.reached(killpoints.NATS_REPLY)  # the work is done, the answer not sent
        # Too large, the batch is refused as a whole: its items then come one by one.
        payload = _fit(route, reply, _encode_reply(route, reply), max_payload)
        with contextlib.suppress(Exception):  # the requester may be gone; nothing to undo
            await msg.respond(payload)


async def _batch_item(
    route: Route[M], request: M | ErrorReply, headers: dict[str, str], size: int, metrics: Metrics
) -> bytes:
    started = _CLOCK.monotonic()
    with _span(route, tracing.extract(headers), size) as span:
        reply = await _run(route, request)
        _handled(route, reply, span, metrics, started)
    return _item_bytes(route, reply)


def _item_bytes(route: Route[Any], reply: Message | None) -> bytes:
    """An item's entry in a BatchReply; `null` where a lone message would get no reply."""
    return b"null" if reply is None else _encode_reply(route, reply)


def _encode_reply(route: Route[Any], reply: Message) -> bytes:
    """The reply's bytes; a reply that cannot be encoded (text with a lone surrogate, say)
    is answered with a typed error rather than left for the requester to time out on."""
    try:
        return codec.encode(reply)
    except Exception as err:
        logger.exception("reply not encodable", extra={"subject": route.subject})
        detail = f"the {type(reply).__name__} could not be encoded: {type(err).__name__}"
        return codec.encode(ErrorReply(code=ErrorCode.INTERNAL, detail=detail))


# Room kept for the JSON around an error's detail when one is cut to fit a message.
_ERROR_ENVELOPE = 256


def _fit(route: Route[Any], reply: Message, payload: bytes, max_payload: int) -> bytes:
    """The reply's bytes if NATS carries them; else a typed error that fits.

    An answer larger than the server's max_payload is refused by the client and the
    requester would wait for nothing until its timeout. Error texts quote the request (a
    name of 900 kB is quoted whole), so an answer can outgrow a request that fitted: the
    error keeps its code with its detail cut, any other answer becomes an `invalid` error.
    """
    if max_payload <= 0 or len(payload) <= max_payload:
        return payload
    size = len(payload)
    logger.warning(
        "reply larger than max_payload",
        extra={"subject": route.subject, "bytes": size, "max_payload": max_payload},
    )
    if isinstance(reply, ErrorReply):
        code, detail = reply.code, reply.detail
    else:
        code, detail = ErrorCode.INVALID, f"the {type(reply).__name__} answer"
    note = f" … ({size} bytes: more than the NATS max_payload of {max_payload})"
    room = max(0, (max_payload - _ERROR_ENVELOPE - len(note.encode())) // 6)
    # 6 bytes is the longest JSON form of one character (\uXXXX), so the cut always fits.
    return codec.encode(ErrorReply(code=code, detail=detail[:room] + note))


# How long a stopping service lets requests in flight finish.
DRAIN_SECONDS = 10.0
# How long a task cancelled at stop may take to clean up (a prepare's rollback over the bus,
# the gateway's sockets: milliseconds while the peers answer) before it is cancelled again.
CLEANUP_SECONDS = 2.0
# How often a task that still runs after its cancel is cancelled again, until it ends.
RECANCEL_SECONDS = 0.1
# A task still running this long after that is named in a warning.
STUCK_SECONDS = 5.0


async def end_tasks(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and return once every one of them has ended.

    One cancel is not always enough. On Python 3.11, asyncio.wait_for (under nats-py's
    request) returns the answer when the answer and the cancel arrive in the same turn of
    the loop: the cancel is lost and the task carries on, into its next sleep, as if it had
    never been asked to stop (CPython gh-86296). So a task still running CLEANUP_SECONDS
    after its cancel is cancelled again, and again every RECANCEL_SECONDS, until it ends. A
    cleanup cut short this way (a rollback that needs the bus) leaves its checkpoint for the
    next call or start to finish, as a SIGKILL would. A loop should also look at
    ctx.stopping before it sleeps, so that a lost cancel does not cost the wait.
    """
    pending = {task for task in tasks if not task.done()}
    for task in pending:
        task.cancel()
    wait, rounds, stuck = CLEANUP_SECONDS, 0, max(2, round(STUCK_SECONDS / RECANCEL_SECONDS))
    while pending:
        _, pending = await asyncio.wait(pending, timeout=wait)
        for task in pending:
            task.cancel()
        if pending:
            rounds += 1
            # Expected now and then (the lost cancel above); a task that does not end
            # however often it is cancelled is a bug, and keeps the service from stopping.
            if rounds in (1, stuck):
                logger.log(
                    logging.INFO if rounds == 1 else logging.WARNING,
                    "tasks still running after they were cancelled; cancelling them again",
                    extra={"tasks": sorted(_where(task) for task in pending)},
                )
        wait = RECANCEL_SECONDS


def _where(task: asyncio.Task[Any]) -> str:
    """The task's name and the line it waits at, for the log."""
    frames = task.get_stack()
    if not frames:
        return task.get_name()
    frame = frames[-1]
    return (
        f"{task.get_name()} at {frame.f_code.co_filename}:{frame.f_lineno} ({frame.f_code.co_name})"
    )


async def serve(
    ctx: ServiceContext, routes: Sequence[Route[Any]], *, max_in_flight: int = 256
) -> None:
    """Serve `routes` until ctx.stopping is set, then stop taking work and finish in-flight."""
    limiter = asyncio.Semaphore(max_in_flight)
    in_flight: set[asyncio.Task[None]] = set()
    queue = subjects.queue_group(ctx.service)

    def finished(task: asyncio.Task[None]) -> None:
        in_flight.discard(task)
        limiter.release()

    def subscriber(route: Route[Any]) -> Callable[[Msg], Awaitable[None]]:
        async def on_message(msg: Msg) -> None:
            await limiter.acquire()  # back-pressure: stop reading while saturated
            task = ctx.tasks.create_task(_dispatch(route, msg, ctx.metrics, ctx.nc.max_payload))
            in_flight.add(task)
            task.add_done_callback(finished)

        return on_message

    subs = [
        await ctx.nc.subscribe(r.subject, queue="" if r.every_instance else queue, cb=subscriber(r))
        for r in routes
    ]
    await ctx.nc.flush()
    await ctx.bus.publish(
        subjects.service_ready(ctx.settings.node_name),
        ServiceReady(service=ctx.service, instance=_instance_id(), node=ctx.settings.node_name),
    )
    logger.info("service ready", extra={"routes": [r.subject for r in routes]})
    await ctx.stopping.wait()
    for sub in subs:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    if in_flight:
        _, late = await asyncio.wait(in_flight, timeout=DRAIN_SECONDS)
        # A handler still waiting after the drain window (on a peer that is gone, say) is
        # cancelled: the requester retries, and a service that never stops is worse.
        if late:
            logger.warning(
                "requests still in flight at stop were cancelled", extra={"count": len(late)}
            )
            await end_tasks(late)


def _instance_id() -> str:
    return f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def run_service(
    service: str, settings: CommonSettings, app: App, stopping: asyncio.Event | None = None
) -> None:
    """Connect, build the app, serve until stopped, then drain and close.

    Without `stopping` the process's SIGTERM and SIGINT stop it; with one (services
    run as tasks in tests) setting that event does.
    """
    loop = asyncio.get_running_loop()
    metrics = Metrics()
    nc = await connect(
        settings.nats_url,
        name=f"{service}@{settings.node_name}",
        on_disconnect=metrics.nats_disconnects.inc,
        on_reconnect=metrics.nats_reconnects.inc,
        inbox=inbox_prefix(service),
    )
    try:
        async with contextlib.AsyncExitStack() as stack, asyncio.TaskGroup() as tasks:
            ctx = ServiceContext(
                service=service,
                settings=settings,
                nc=nc,
                js=nc.jetstream(domain=settings.js_domain or None),
                bus=NatsBus(nc),
                tasks=tasks,
                stack=stack,
                stopping=stopping or asyncio.Event(),
                metrics=metrics,
            )
            ctx.readiness.add("nats", lambda: nc.is_connected)
            if settings.http_port:
                endpoints = await http.serve(ctx.readiness, metrics.registry, settings.http_port)
                stack.push_async_callback(endpoints.cleanup)
            if stopping is None:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, ctx.stopping.set)
            try:
                routes = await app(ctx)
                await serve(ctx, routes)
            finally:
                # Every task the app started ends before the service does (the task group
                # would otherwise wait for it, and the service never stop).
                await end_tasks(ctx.background)
    finally:
        with contextlib.suppress(Exception):
            await nc.drain()
        logger.info("service stopped")
