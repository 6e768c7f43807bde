"""An in-memory Bus for handler tests: the same encoding, error replies and deadlines as NATS.

Requests are encoded, answered by the route's handler through the runner's own `answer`
(so a handler's failure becomes the ErrorReply it would be on NATS, and a RemoteError
here), and the reply decoded as the requester's type. A subject nobody serves raises
Unavailable; a handler slower than the deadline raises RequestTimeout. Every request
and published event is kept, in order, for the test to read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from hostdev_bus import RequestTimeout, Unavailable, codec
from hostdev_bus.client import decode_reply
from hostdev_events.base import Message
from hostdev_runtime.runner import Route, answer

M = TypeVar("M", bound=Message)
R = TypeVar("R", bound=Message)


class MemoryBus:
    """hostdev_bus.Bus in one process: routes by exact subject."""

    def __init__(self) -> None:
        self._routes: dict[str, Route[Any]] = {}
        self.requests: list[tuple[str, Message]] = []
        self.published: list[tuple[str, Message]] = []

    def serve(
        self, subject: str, request: type[M], handler: Callable[[M], Awaitable[Message | None]]
    ) -> None:
        """Answer requests on `subject` with `handler` (replacing any earlier one)."""
        self._routes[subject] = Route(subject, request, handler)

    def subjects(self) -> list[str]:
        """The subjects requested so far, in order."""
        return [subject for subject, _ in self.requests]

    async def request(self, subject: str, message: Message, reply: type[R], timeout: float) -> R:
        route = self._routes.get(subject)
        if route is None:
            raise Unavailable(subject, "no responders")
        self.requests.append((subject, message))
        try:
            answered = await asyncio.wait_for(answer(route, codec.encode(message)), timeout)
        except TimeoutError as err:
            raise RequestTimeout(subject, timeout) from err
        if answered is None:
            raise RequestTimeout(subject, timeout)  # no reply is, to a requester, a timeout
        return decode_reply(subject, codec.encode(answered), reply)

    async def publish(self, subject: str, message: Message) -> None:
        self.published.append((subject, message))
