"""Run the API emulator as a process: `python -m hostdev_testing.apiserver --url-file PATH`."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
from pathlib import Path

from hostdev_testing.apiserver import gates
from hostdev_testing.apiserver.server import ApiServer


def _write_atomically(path: Path, text: str) -> None:
    # Readers poll for the file; they must never see it half written.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


async def serve(args: argparse.Namespace) -> None:
    server = ApiServer(
        args.schemas_dir,
        host=args.host,
        port=args.port,
        feature_gates=gates.parse(args.feature_gates),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    url = await server.start()
    try:
        if args.url_file is not None:
            await asyncio.to_thread(_write_atomically, args.url_file, url + "\n")
        print(url, flush=True)
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hostdev_testing.apiserver", description=__doc__
    )
    parser.add_argument(
        "--schemas-dir", type=Path, help="folder with k8s-resource.k8s.io-v1-openapi.json"
    )
    parser.add_argument("--url-file", type=Path, help="write the base URL here once listening")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 lets the kernel choose")
    parser.add_argument(
        "--feature-gates",
        default="",
        help="as kube-apiserver's, e.g. DRAConsumableCapacity=false (drops its fields on write)",
    )
    asyncio.run(serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
