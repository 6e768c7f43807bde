"""`hostdev claims`: the node's claim checkpoints, as the preparer recorded them in KV."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import nats.errors
import nats.js.errors

from hostdev_cli.errors import OperationFailed
from hostdev_cli.natsconn import connected
from hostdev_cli.output import table
from hostdev_events import subjects
from hostdev_events.state import Checkpoint
from hostdev_sysfs import HostRoot

BOOT_ID = "/proc/sys/kernel/random/boot_id"


@dataclass(frozen=True, slots=True)
class Recorded:
    """One checkpoint and when it was last written."""

    key: str
    checkpoint: Checkpoint
    written: datetime


def current_boot_id(root: HostRoot) -> str:
    """The kernel's boot ID under the root; empty when it cannot be read."""
    try:
        return root.read_text(BOOT_ID).strip()
    except OSError:
        return ""


async def read_checkpoints(url: str, domain: str, node: str) -> list[Recorded]:
    """Every checkpoint of `node`, oldest key first; none when the bucket does not exist."""
    decoder = msgspec.json.Decoder(Checkpoint)
    prefix = subjects.node_token(node) + "."  # as subjects.checkpoint_key builds them
    found: list[Recorded] = []
    async with connected(url) as nc:
        js = nc.jetstream(domain=domain or None)
        try:
            kv = await js.key_value(subjects.CHECKPOINT_BUCKET)
        except nats.js.errors.BucketNotFoundError:
            return []
        except (nats.errors.Error, TimeoutError) as err:
            # No JetStream in that domain, or a user without rights to the bucket.
            raise OperationFailed(f"cannot open {subjects.CHECKPOINT_BUCKET}: {err}") from err
        watcher = await kv.watch(f"{prefix}>", ignore_deletes=True)
        try:
            async for entry in watcher:
                if entry is None:  # every current value has been sent
                    break
                if entry.value:
                    written = entry.created or datetime.now(UTC)
                    found.append(Recorded(entry.key, decoder.decode(entry.value), written))
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
    return sorted(found, key=lambda r: r.key)


def age(written: datetime, now: datetime) -> str:
    """A short age: 42s, 7m, 3h, 2d."""
    seconds = max(0, int((now - written).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def boot_note(checkpoint: Checkpoint, boot_id: str) -> str:
    """The checkpoint's boot ID, and whether it is this boot."""
    if not checkpoint.boot_id:
        return "-"
    if not boot_id:
        return checkpoint.boot_id
    when = "this boot" if checkpoint.boot_id == boot_id else "earlier boot"
    return f"{checkpoint.boot_id} ({when})"


def to_data(records: list[Recorded], boot_id: str, now: datetime) -> list[dict[str, Any]]:
    """Plain data for --json / --yaml: the whole checkpoint plus age and boot verdict."""
    return [
        {
            "key": r.key,
            "written": r.written.isoformat(),
            "ageSeconds": int((now - r.written).total_seconds()),
            "thisBoot": bool(boot_id) and r.checkpoint.boot_id == boot_id,
            "checkpoint": msgspec.to_builtins(r.checkpoint),
        }
        for r in records
    ]


def render(records: list[Recorded], boot_id: str, now: datetime) -> str:
    """One line per claim."""
    if not records:
        return "no checkpoints for this node"
    rows = [
        (
            f"{c.claim.namespace}/{c.claim.name}",
            c.claim.uid,
            str(c.step),
            ",".join(d.device for d in c.devices) or "-",
            age(r.written, now),
            boot_note(c, boot_id),
        )
        for r in records
        for c in (r.checkpoint,)
    ]
    return table(("CLAIM", "UID", "STEP", "DEVICES", "AGE", "BOOT ID"), rows)
