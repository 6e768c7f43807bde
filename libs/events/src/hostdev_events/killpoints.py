"""Kill points for the fault-injection campaign (`./dev chaos`).

The shared layers call `reached(kind)` right after each point where a process has waited
on the outside world and the world has changed (a NATS reply arrived, a KV write landed, a
sysfs or file write took effect, the API server answered) or, for replies, right before
the answer leaves. With nothing set in the environment (production) `reached` returns at
once. The campaign sets:

- `HOSTDEV_CHAOS_COUNT_FILE=<path>`: append one line per event (`<kind>`), so a fault-free
  run tells how many points of each kind a process has;
- `HOSTDEV_CHAOS_KILL_AT=<kind>:<n>`: SIGKILL this process at its Nth event of that kind,
  as a crash or an OOM kill would, with no cleanup;
- `HOSTDEV_CHAOS_KILL_PID=<pid>`: with KILL_AT, SIGKILL that process instead (nats-server)
  and carry on.

A process kills itself only outside `UNTORN`: the test kit's fakes of the kernel and of
netlink carry out each write under it, because a real kernel finishes a write's effects
whatever happens to the writer, and a SIGKILL from another thread (an asyncio loop reaching
its point while a worker thread is in the fake kernel) must not leave half a reaction behind.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Mapping

NATS_REQUEST = "nats.request"
NATS_REPLY = "nats.reply"
KV_READ = "kv.read"
KV_WRITE = "kv.write"
SYSFS_WRITE = "sysfs.write"
NETLINK_WRITE = "netlink.write"
FILE_WRITE = "file.write"
API_CALL = "api.call"
KINDS = (
    NATS_REQUEST,
    NATS_REPLY,
    KV_READ,
    KV_WRITE,
    SYSFS_WRITE,
    NETLINK_WRITE,
    FILE_WRITE,
    API_CALL,
)

KILL_AT = "HOSTDEV_CHAOS_KILL_AT"
KILL_PID = "HOSTDEV_CHAOS_KILL_PID"
COUNT_FILE = "HOSTDEV_CHAOS_COUNT_FILE"

# Held by work a kill must not tear (see the module's text); reentrant, so a point reached
# inside that work kills there.
UNTORN = threading.RLock()


class _Armed:
    """Counts events per kind (file writes run in threads, hence the lock)."""

    def __init__(self, kind: str, nth: int, pid: int, count_file: str) -> None:
        self.kind = kind
        self.nth = nth
        self.pid = pid
        self.count_fd = (
            os.open(count_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            if count_file
            else None
        )
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()

    def reached(self, kind: str) -> None:
        with self.lock:
            n = self.counts[kind] = self.counts.get(kind, 0) + 1
            if self.count_fd is not None:
                os.write(self.count_fd, f"{kind}\n".encode())
            if kind != self.kind or n != self.nth:
                return
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            return
        UNTORN.acquire()  # never released: the process dies holding it
        os.kill(os.getpid(), signal.SIGKILL)


def _from_env(env: Mapping[str, str]) -> _Armed | None:
    at, count_file = env.get(KILL_AT, ""), env.get(COUNT_FILE, "")
    if not at and not count_file:
        return None
    kind, nth = "", 0
    if at:
        kind, _, number = at.rpartition(":")
        if kind not in KINDS or not number.isdigit() or int(number) < 1:
            raise ValueError(f"{KILL_AT}={at!r}: expected <kind>:<n> with kind one of {KINDS}")
        nth = int(number)
    pid = env.get(KILL_PID, "")
    if pid and not pid.isdigit():
        raise ValueError(f"{KILL_PID}={pid!r}: expected a process ID")
    return _Armed(kind, nth, int(pid or 0), count_file)


_armed = _from_env(os.environ)


def reached(kind: str) -> None:
    """One event of `kind` has happened in this process; a no-op unless the campaign is on."""
    if _armed is not None:
        _armed.reached(kind)
