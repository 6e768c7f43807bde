"""One async function per subject: write and remove a claim's CDI specs."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from hostdev_bus import KvStore
from hostdev_cdi import (
    InvalidSpec,
    decode_spec,
    encode_spec,
    metadata,
    names,
    remove_owned,
    write_atomic,
)
from hostdev_events import killpoints, subjects
from hostdev_events.base import ErrorCode
from hostdev_events.cdi import (
    CdiSpecsRemoved,
    CdiSpecsWritten,
    RemoveCdiSpecs,
    RequestMetadata,
    WriteCdiSpecs,
)
from hostdev_events.state import Checkpoint
from hostdev_runtime.errors import HandlerError

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Deps:
    """What the handlers use."""

    node: str
    driver: str
    cdi_root: Path
    # Write and remove a claim's files on the event loop rather than a worker thread: set
    # where cdi_root is in memory (hostdev_cdi.filesystem says why).
    on_loop: bool = False


async def _on_disk(deps: Deps, work: Callable[..., T], *args: Any) -> T:
    """Run file work where `deps` says: on the loop, or on a worker thread."""
    if deps.on_loop:
        return work(*args)
    return await asyncio.to_thread(work, *args)


def _owner(owner: str) -> str:
    try:
        return names.check_owner(owner)
    except InvalidSpec as err:
        raise HandlerError(ErrorCode.INVALID, str(err)) from err


def _metadata_dir(deps: Deps, owner: str) -> Path:
    return deps.cdi_root / metadata.HOST_DIR / owner


def _write_metadata(deps: Deps, owner: str, items: tuple[RequestMetadata, ...]) -> bytes | None:
    """Write each request's metadata file; returns the spec that mounts them, if any."""
    target = _metadata_dir(deps, owner)
    mounts = []
    for item in items:
        try:
            request = metadata.check_request(item.request)
        except InvalidSpec as err:
            raise HandlerError(ErrorCode.INVALID, str(err)) from err
        if (
            not item.container_path.startswith(metadata.CONTAINER_BASE + "/")
            or ".." in item.container_path
        ):
            raise HandlerError(
                ErrorCode.INVALID,
                f"metadata path {item.container_path!r} is outside {metadata.CONTAINER_BASE}",
            )
        host = write_atomic(target / request, "metadata.json", bytes(item.document))
        mounts.append((request, str(host), item.container_path))
    keep = {m[0] for m in mounts}
    if target.is_dir():
        for old in target.iterdir():
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)
    if not mounts:
        shutil.rmtree(target, ignore_errors=True)
        return None
    return encode_spec(metadata.spec(deps.driver, owner, mounts))


def _write_all(
    deps: Deps, owner: str, specs: tuple[msgspec.Raw, ...], items: tuple[RequestMetadata, ...]
) -> tuple[str, ...]:
    decoded = []
    extra = _write_metadata(deps, owner, items)
    for raw in (*specs, *((msgspec.Raw(extra),) if extra else ())):
        try:
            spec = decode_spec(bytes(raw))
        except (msgspec.DecodeError, msgspec.ValidationError, InvalidSpec) as err:
            raise HandlerError(ErrorCode.INVALID, f"CDI spec for {owner}: {err}") from err
        vendor, _ = names.split_kind(spec.kind)
        if vendor != names.vendor_for(deps.driver) and vendor != deps.driver:
            raise HandlerError(ErrorCode.INVALID, f"CDI vendor {vendor} is not this driver's")
        decoded.append((names.spec_file_name(spec.kind, owner), bytes(raw)))
    paths = [write_atomic(deps.cdi_root, file_name, data) for file_name, data in decoded]
    keep = {p.name for p in paths}
    _unlink([p for p in _spec_paths(deps, owner) if p.name not in keep])
    return tuple(str(p) for p in paths)


def _spec_paths(deps: Deps, owner: str) -> list[Path]:
    """Every spec file this driver may have written for `owner`: known names, so no call
    has to scan a directory that grows with the claims on the node."""
    kinds = (
        names.kind(names.vendor_for(deps.driver), names.DEVICE_CLASS),
        metadata.metadata_kind(deps.driver),
    )
    return [deps.cdi_root / names.spec_file_name(kind, owner) for kind in kinds]


def _unlink(paths: list[Path]) -> list[Path]:
    removed = []
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
        killpoints.reached(killpoints.FILE_WRITE)
    return removed


async def on_write(msg: WriteCdiSpecs, deps: Deps) -> CdiSpecsWritten:
    """Validate and write every spec of the owner atomically; drop its other specs."""
    owner = _owner(msg.owner)
    paths = await _on_disk(deps, _write_all, deps, owner, msg.specs, msg.metadata)
    return CdiSpecsWritten(owner=owner, paths=paths)


async def on_remove(msg: RemoveCdiSpecs, deps: Deps) -> CdiSpecsRemoved:
    """Remove every spec file of the owner; none left is success."""
    owner = _owner(msg.owner)
    removed = await _on_disk(deps, _remove_all, deps, owner)
    return CdiSpecsRemoved(owner=owner, paths=tuple(str(p) for p in removed))


def _remove_all(deps: Deps, owner: str) -> list[Path]:
    removed = _unlink(_spec_paths(deps, owner))
    folder = _metadata_dir(deps, owner)
    if folder.exists():
        shutil.rmtree(folder)
        removed.append(folder)
        killpoints.reached(killpoints.FILE_WRITE)
    return removed


def _our_owners(deps: Deps) -> dict[str, list[Path]]:
    """Owners of spec files this driver wrote, from the file names."""
    prefix = names.vendor_for(deps.driver) + "-"
    found: dict[str, list[Path]] = {}
    if not deps.cdi_root.is_dir():
        return found
    for path in deps.cdi_root.iterdir():
        start = next((p for p in (prefix, deps.driver + "-") if path.name.startswith(p)), None)
        if start is not None and path.suffix == ".json":
            # `<class>_<owner>`: our classes have no `_`, device-plugin owners do
            # (`dp_<resource>_<id>`), so the owner is everything after the first one.
            owner = path.stem[len(start) :].partition("_")[2]
            found.setdefault(owner, []).append(path)
    folder = deps.cdi_root / metadata.HOST_DIR
    for path in folder.iterdir() if folder.is_dir() else []:
        found.setdefault(path.name, []).append(path)
    return found


# A claim with no host action gets its spec while its one checkpoint is written (see the
# preparer's flow.complete_at_once), and that write may fail or be cut short, within one kubelet call: 45 s, and a hop at most 10 s.
IN_FLIGHT_SECONDS = 120.0


def _newest_change(paths: list[Path]) -> float:
    newest = 0.0
    for path in paths:
        try:
            newest = max(newest, path.stat().st_mtime)
        except OSError:
            continue  # gone meanwhile
    return newest


async def remove_orphans(
    deps: Deps, checkpoints: KvStore[Checkpoint], now: float | None = None
) -> list[str]:
    """Remove spec files whose claim has no checkpoint: specs are derived from checkpoints.

    Files written in the last IN_FLIGHT_SECONDS (by the wall clock, `now`) stay: they may be
    a prepare's whose checkpoint is about to be written. If that prepare never completes,
    the kubelet's unprepare or the preparer's orphan scan removes them.
    """
    removed: list[str] = []
    started = time.time() if now is None else now
    for owner, paths in (await asyncio.to_thread(_our_owners, deps)).items():
        if started - await asyncio.to_thread(_newest_change, paths) < IN_FLIGHT_SECONDS:
            continue
        if await checkpoints.get(subjects.checkpoint_key(deps.node, owner)) is None:
            found = await asyncio.to_thread(remove_owned, deps.cdi_root, owner)
            for path in found + await asyncio.to_thread(_remove_all, deps, owner):
                removed.append(str(path))
    if removed:
        logger.info("removed orphan CDI specs", extra={"paths": removed})
    return removed
