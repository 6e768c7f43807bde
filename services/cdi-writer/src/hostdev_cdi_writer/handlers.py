"""One async function per subject: write and remove a claim's CDI specs."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import msgspec

from hostdev_bus import KvStore
from hostdev_cdi import InvalidSpec, decode_spec, names, remove_owned, write_atomic
from hostdev_events import subjects
from hostdev_events.base import ErrorCode
from hostdev_events.cdi import CdiSpecsRemoved, CdiSpecsWritten, RemoveCdiSpecs, WriteCdiSpecs
from hostdev_events.state import Checkpoint
from hostdev_runtime.errors import HandlerError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Deps:
    """What the handlers use."""

    node: str
    driver: str
    cdi_root: Path


def _owner(owner: str) -> str:
    try:
        return names.check_owner(owner)
    except InvalidSpec as err:
        raise HandlerError(ErrorCode.INVALID, str(err)) from err


def _write_all(deps: Deps, owner: str, specs: tuple[msgspec.Raw, ...]) -> tuple[str, ...]:
    decoded = []
    for raw in specs:
        try:
            spec = decode_spec(bytes(raw))
        except (msgspec.DecodeError, msgspec.ValidationError, InvalidSpec) as err:
            raise HandlerError(ErrorCode.INVALID, f"CDI spec for {owner}: {err}") from err
        vendor, _ = names.split_kind(spec.kind)
        if vendor != names.vendor_for(deps.driver) and vendor != deps.driver:
            raise HandlerError(ErrorCode.INVALID, f"CDI vendor {vendor} is not this driver's")
        decoded.append((names.spec_file_name(spec.kind, owner), bytes(raw)))
    paths = [write_atomic(deps.cdi_root, file_name, data) for file_name, data in decoded]
    remove_owned(deps.cdi_root, owner, keep=frozenset(p.name for p in paths))
    return tuple(str(p) for p in paths)


async def on_write(msg: WriteCdiSpecs, deps: Deps) -> CdiSpecsWritten:
    """Validate and write every spec of the owner atomically; drop its other specs."""
    owner = _owner(msg.owner)
    paths = await asyncio.to_thread(_write_all, deps, owner, msg.specs)
    return CdiSpecsWritten(owner=owner, paths=paths)


async def on_remove(msg: RemoveCdiSpecs, deps: Deps) -> CdiSpecsRemoved:
    """Remove every spec file of the owner; none left is success."""
    owner = _owner(msg.owner)
    removed = await asyncio.to_thread(remove_owned, deps.cdi_root, owner)
    return CdiSpecsRemoved(owner=owner, paths=tuple(str(p) for p in removed))


def _our_owners(deps: Deps) -> dict[str, list[Path]]:
    """Owners of spec files this driver wrote, from the file names."""
    prefix = names.vendor_for(deps.driver) + "-"
    found: dict[str, list[Path]] = {}
    if not deps.cdi_root.is_dir():
        return found
    for path in deps.cdi_root.iterdir():
        if path.name.startswith((prefix, deps.driver + "-")) and path.suffix == ".json":
            owner = path.stem.rpartition("_")[2]
            found.setdefault(owner, []).append(path)
    return found


async def remove_orphans(deps: Deps, checkpoints: KvStore[Checkpoint]) -> list[str]:
    """Remove spec files whose claim has no checkpoint: specs are derived from checkpoints."""
    removed: list[str] = []
    for owner in await asyncio.to_thread(_our_owners, deps):
        if await checkpoints.get(subjects.checkpoint_key(deps.node, owner)) is None:
            for path in await asyncio.to_thread(remove_owned, deps.cdi_root, owner):
                removed.append(str(path))
    if removed:
        logger.info("removed orphan CDI specs", extra={"paths": removed})
    return removed
