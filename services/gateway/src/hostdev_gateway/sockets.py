"""gRPC servers on unix sockets: stale files replaced, sockets removed on the way out."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

import grpc

logger = logging.getLogger(__name__)

MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes including the terminating NUL


class SocketPathError(ValueError):
    """A socket path is too long or occupied by something that is not a socket."""


def remove_stale(path: Path) -> None:
    """Remove an old socket of ours at `path`; refuse to remove anything else."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SocketPathError(f"{path} exists and is not a socket; not removing it")
    path.unlink()


async def serve_unix(server: grpc.aio.Server, path: Path) -> None:
    """Bind `server` to the unix socket `path` and start it."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise SocketPathError(f"socket path is longer than {MAX_SOCKET_PATH} bytes: {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    server.add_insecure_port(f"unix:{path}")
    await server.start()
    logger.info("serving", extra={"socket": str(path)})


async def stop_unix(server: grpc.aio.Server, path: Path, grace: float = 2.0) -> None:
    """Stop `server` (in-flight calls get `grace` seconds) and remove its socket."""
    await server.stop(grace)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
