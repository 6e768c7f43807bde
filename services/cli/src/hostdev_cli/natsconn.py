"""Connect to the node's NATS once, without retrying: a command answers or says why not."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.aio.client import Client as NatsClient

from hostdev_cli.errors import OperationFailed

DEFAULT_URL = "nats://127.0.0.1:4222"
CONNECT_SECONDS = 3.0


def nats_url(given: str | None) -> str:
    """--nats, else $HOSTDEV_NATS_URL (credentials in the URL, as the services take them)."""
    return given or os.environ.get("HOSTDEV_NATS_URL") or DEFAULT_URL


def js_domain(given: str | None) -> str:
    """--js-domain, else $HOSTDEV_JS_DOMAIN; empty uses the server's local JetStream."""
    return given if given is not None else os.environ.get("HOSTDEV_JS_DOMAIN", "")


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def _quiet(err: Exception) -> None:
    """nats-py logs every failed attempt; the command reports the failure once itself."""


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[NatsClient]:
    """One connection attempt; OperationFailed names the (redacted) URL and the error."""
    try:
        # nats-py reads max_reconnect_attempts=0 as "no limit" while connecting: allow one
        # retry, and bound the whole attempt in time as well.
        async with asyncio.timeout(CONNECT_SECONDS):
            nc = await nats.connect(
                url,
                name="hostdev-cli",
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.1,
                connect_timeout=CONNECT_SECONDS,
                error_cb=_quiet,
            )
    except TimeoutError as err:
        raise OperationFailed(
            f"cannot reach NATS at {redacted(url)}: no answer in {CONNECT_SECONDS:g} s"
        ) from err
    except Exception as err:  # nats-py raises its own errors, OSError and timeouts here
        raise OperationFailed(
            f"cannot reach NATS at {redacted(url)}: {err or type(err).__name__}"
        ) from err
    try:
        yield nc
    finally:
        await nc.close()
