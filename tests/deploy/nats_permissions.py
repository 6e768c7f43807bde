"""The node leaf's NATS users exactly as k8s/base ships them, on a real nats-server for tests.

The authorization block is cut verbatim from the nats-leaf-config ConfigMap; each service's URL
is its DaemonSet's HOSTDEV_NATS_URL with the $(NATS_PASSWORD) reference expanded the way the
kubelet does; each password reaches the server through the variable the leaf DaemonSet maps
from the same Secret key. The tests thereby check the shipped wiring, not a copy of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import yaml
from nats.aio.client import Client as NatsClient

from hostdev_bus import inbox_prefix
from hostdev_testing.nats import NatsServerError, nats_server_executable
from hostdev_testing.services import MODULES

BASE = Path(__file__).resolve().parents[2] / "k8s" / "base"
SECRET = "hostdev-nats-users"
PASSWORD_VAR = "NATS_PASSWORD"
SERVICES = tuple(MODULES)
# A user the tests add beside the shipped ones: the harness watches service.ready and asks the
# gateway to reconcile device plugin allocations, as an operator would.
HARNESS_USER = "test-harness"
_HARNESS_PERMISSIONS = (
    'publish: { allow: ["hostdev.v1.*.dp.reconcile"] }, '
    'subscribe: { allow: ["hostdev.v1.*.service.ready", "_INBOX.>"] }'
)
_REFERENCE = re.compile(r"\$\((\w+)\)")

Obj = dict[str, Any]


def _objects(file: str) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all((BASE / file).read_text()) if doc]


def _one(file: str, kind: str, name: str) -> Obj:
    (found,) = [o for o in _objects(file) if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _env_list(daemonset: Obj) -> list[Obj]:
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    env: list[Obj] = container["env"]
    return env


def _secret_key(entry: Obj) -> str | None:
    """The key of SECRET an env entry reads, if it reads one."""
    ref = entry.get("valueFrom", {}).get("secretKeyRef")
    if ref is None:
        return None
    assert ref["name"] == SECRET, f"{entry['name']}: reads Secret {ref['name']}, not {SECRET}"
    return str(ref["key"])


def leaf_config() -> str:
    """leaf.conf from the nats-leaf-config ConfigMap."""
    text: str = _one("nats.yaml", "ConfigMap", "nats-leaf-config")["data"]["leaf.conf"]
    return text


def authorization_block(config: str) -> str:
    """The `authorization { ... }` block of a NATS configuration, verbatim.

    Braces inside quoted strings and comments do not count.
    """
    match = re.search(r"^\s*authorization\s*\{", config, re.MULTILINE)
    assert match is not None, "the configuration has no authorization block"
    depth, quoted, comment = 0, False, False
    for index in range(match.end() - 1, len(config)):
        char = config[index]
        if comment:
            comment = char != "\n"
        elif quoted:
            quoted = char != '"'
        elif char == '"':
            quoted = True
        elif char == "#":
            comment = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return config[match.start() : index + 1].strip()
    raise AssertionError("the authorization block is not closed")


def secret_keys() -> frozenset[str]:
    """The keys the base's secretGenerator gives the NATS users' Secret."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    (generator,) = [g for g in kustomization["secretGenerator"] if g["name"] == SECRET]
    return frozenset(literal.partition("=")[0] for literal in generator["literals"])


def leaf_password_variables() -> dict[str, str]:
    """Secret key -> the leaf container's variable holding it (what leaf.conf refers to)."""
    leaf = _one("nats.yaml", "DaemonSet", "nats-leaf")
    found = {}
    for entry in _env_list(leaf):
        key = _secret_key(entry)
        if key is not None:
            found[key] = str(entry["name"])
    return found


def service_url(service: str, passwords: Mapping[str, str]) -> str:
    """The service's HOSTDEV_NATS_URL with $(VAR) references expanded as the kubelet does:
    only from variables defined earlier in the same env list (Secret ones from `passwords`)."""
    earlier: dict[str, str] = {}
    for entry in _env_list(_one(f"{service}.yaml", "DaemonSet", f"hostdev-{service}")):
        key = _secret_key(entry)
        if entry["name"] == "HOSTDEV_NATS_URL":

            def expand(match: re.Match[str]) -> str:
                assert match[1] in earlier, f"{service}: $({match[1]}) is not defined before"
                return earlier[match[1]]

            return _REFERENCE.sub(expand, str(entry["value"]))
        if key is not None:
            earlier[str(entry["name"])] = passwords[key]
        elif "value" in entry:
            earlier[str(entry["name"])] = str(entry["value"])
    raise AssertionError(f"{service}: its DaemonSet sets no HOSTDEV_NATS_URL")


def service_password_key(service: str) -> str:
    """The Secret key the service's NATS_PASSWORD reads."""
    for entry in _env_list(_one(f"{service}.yaml", "DaemonSet", f"hostdev-{service}")):
        if entry["name"] == PASSWORD_VAR:
            key = _secret_key(entry)
            assert key is not None, f"{service}: {PASSWORD_VAR} does not come from {SECRET}"
            return key
    raise AssertionError(f"{service}: its DaemonSet sets no {PASSWORD_VAR}")


def _with_user(block: str, user: str, password: str, permissions: str) -> str:
    """The block with one more user, first in its users list."""
    opening = re.compile(r"\busers\s*:\s*\[")
    assert len(opening.findall(block)) == 1, "expected one users list"
    entry = f"{{ user: {user}, password: {password}, permissions: {{ {permissions} }} }}"
    return opening.sub(lambda m: f"{m[0]}\n{entry}", block, count=1)


@dataclass
class LeafServer:
    """A JetStream nats-server on 127.0.0.1 with the leaf's users; `url(service)` logs in as one."""

    workdir: Path
    passwords: dict[str, str] = field(default_factory=dict)
    harness_password: str = ""
    address: str = ""
    log: list[str] = field(default_factory=list)
    _proc: subprocess.Popen[str] | None = None
    _reader: threading.Thread | None = None

    def _config(self) -> str:
        block = _with_user(
            authorization_block(leaf_config()),
            HARNESS_USER,
            self.harness_password,
            _HARNESS_PERMISSIONS,
        )
        return "\n".join(
            [
                "host: 127.0.0.1",
                "port: -1",
                f'jetstream {{ store_dir: "{self.workdir / "js"}" }}',
                block,
                "",
            ]
        )

    def start(self, timeout: float = 10.0) -> None:
        """Start the server; return once it logs that it is ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.passwords = {key: f"p{secrets.token_hex(16)}" for key in secret_keys()}
        self.harness_password = f"p{secrets.token_hex(16)}"
        variables = leaf_password_variables()
        assert set(variables) == set(self.passwords), "the leaf must read every Secret key"
        config = self.workdir / "leaf.conf"
        config.write_text(self._config())
        self._proc = subprocess.Popen(
            [str(nats_server_executable()), "--config", str(config)],
            env={variables[key]: value for key, value in self.passwords.items()},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready = threading.Event()
        self._reader = threading.Thread(
            target=self._read_log, args=(self._proc.stderr, ready), daemon=True
        )
        self._reader.start()
        if not ready.wait(timeout) or not self.address:
            self.stop()
            raise NatsServerError("nats-server did not start:\n" + "".join(self.log))

    def _read_log(self, stream: IO[str], ready: threading.Event) -> None:
        """Keep the server's log (it must never block on a full pipe); note its address."""
        for line in stream:
            self.log.append(line)
            listening = re.search(r"Listening for client connections on (\S+)", line)
            if listening:
                self.address = listening[1]
            if "Server is ready" in line:
                ready.set()
        ready.set()  # exited: let start() report the log

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)  # the log ends with the process
        if self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None

    def _here(self, url: str) -> str:
        """`url` with its host and port replaced by this server's, credentials kept."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        return urlunsplit(parts._replace(netloc=f"{credentials}@{self.address}"))

    def url(self, service: str) -> str:
        """The URL the service's pod gets, pointed at this server."""
        return self._here(service_url(service, self.passwords))

    @property
    def harness_url(self) -> str:
        """The test harness's own login (service.ready, dp.reconcile)."""
        return f"nats://{HARNESS_USER}:{self.harness_password}@{self.address}"

    @property
    def anonymous_url(self) -> str:
        """No credentials at all."""
        return f"nats://{self.address}"

    def violations(self) -> list[str]:
        """Permission violations the server logged: all of them once stopped (the log is read
        by a thread, so a running server's last lines may not be in yet)."""
        return [line for line in self.log if "Violation" in line]


@contextlib.contextmanager
def leaf_server(workdir: Path) -> Iterator[LeafServer]:
    """A started LeafServer, stopped on exit."""
    server = LeafServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# A subject nobody may publish to: its violation marks that the server has answered everything
# sent before it (the server handles one connection's protocol in order, errors included).
_SENTINEL = "hostdev.permission-probe"


@dataclass
class Probe:
    """One connection as one user, telling allowed from denied by the server's -ERR alone."""

    nc: NatsClient
    errors: list[str] = field(default_factory=list)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def on_error(self, err: Exception) -> None:
        """nats-py's error callback: the server's `Permissions Violation` errors land here."""
        async with self._arrived:
            self.errors.append(str(err).lower())
            self._arrived.notify_all()

    async def _denied(self, since: int, needle: str) -> bool:
        """Whether an error after the first `since` ones matches `needle`, once the server has
        answered everything sent so far."""
        marker = f"{_SENTINEL}.{uuid.uuid4().hex}"
        await self.nc.publish(marker, b"")
        await self.nc.flush()
        expected = f'for publish to "{marker}"'
        async with asyncio.timeout(5), self._arrived:
            await self._arrived.wait_for(lambda: any(expected in e for e in self.errors[since:]))
        return any(needle.lower() in error for error in self.errors[since:])

    async def refuses(self, operation: Awaitable[object], subject: str) -> bool:
        """Run a client call (a KV operation, say); True when the server refuses its publish to
        `subject` before the call finishes. The refused call is cancelled, not waited out."""
        since = len(self.errors)
        needle = f'for publish to "{subject}"'.lower()
        call = asyncio.ensure_future(operation)

        async def refusal() -> None:
            async with self._arrived:
                await self._arrived.wait_for(lambda: any(needle in e for e in self.errors[since:]))

        refused = asyncio.ensure_future(refusal())
        try:
            async with asyncio.timeout(5):
                await asyncio.wait({call, refused}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (call, refused):
                task.cancel()
            await asyncio.gather(call, refused, return_exceptions=True)
        return refused.done() and not refused.cancelled()

    async def can_publish(self, subject: str) -> bool:
        """Publish an empty message; True when the server accepted it."""
        since = len(self.errors)
        await self.nc.publish(subject, b"")
        return not await self._denied(since, f'for publish to "{subject}"')

    async def can_subscribe(self, subject: str, queue: str = "") -> bool:
        """Subscribe (in `queue` when given); True when the server accepted it."""
        since = len(self.errors)
        sub = await self.nc.subscribe(subject, queue=queue)
        try:
            in_queue = f' using queue "{queue}"' if queue else ""
            return not await self._denied(since, f'for subscription to "{subject}"{in_queue}')
        finally:
            await sub.unsubscribe()


@contextlib.asynccontextmanager
async def probe(url: str) -> AsyncIterator[Probe]:
    """A Probe connected with the credentials in `url`, and that user's own reply inbox as the
    services use it (the test harness user keeps the default one)."""
    found = Probe(nc=NatsClient())
    user = urlsplit(url).username or ""
    inbox = "_INBOX" if user in ("", HARNESS_USER) else inbox_prefix(user)
    await found.nc.connect(url, error_cb=found.on_error, allow_reconnect=False, inbox_prefix=inbox)
    try:
        yield found
    finally:
        await found.nc.close()


async def refuses_login(url: str) -> bool:
    """Whether the server turns away a client logging in with `url`'s credentials.

    Spoken in the NATS protocol directly: nats-py leaks its socket when a login fails.
    """
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        async with asyncio.timeout(5):
            await reader.readline()  # INFO
            connect: dict[str, object] = {"verbose": False, "pedantic": False, "protocol": 1}
            if parts.username is not None:
                connect |= {"user": parts.username, "pass": parts.password or ""}
            writer.write(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
            await writer.drain()
            answer = (await reader.readline()).decode()
    finally:
        writer.close()
        await writer.wait_closed()
    assert answer.startswith(("PONG", "-ERR")), answer
    return "authorization violation" in answer.lower()
