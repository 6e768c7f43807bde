"""Atomic writes and removal of spec files in one directory."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import msgspec

from hostdev_cdi import names
from hostdev_cdi.spec import Spec
from hostdev_cdi.validate import validate
from hostdev_events import killpoints

_encoder = msgspec.json.Encoder()


def encode_spec(spec: Spec) -> bytes:
    """The JSON bytes of a spec."""
    return _encoder.encode(spec)


def decode_spec(data: bytes) -> Spec:
    """Decode and validate a spec; raises msgspec errors or InvalidSpec."""
    spec = msgspec.json.decode(data, type=Spec)
    validate(spec)
    return spec


def write_atomic(directory: Path, file_name: str, data: bytes) -> Path:
    """Write `data` to directory/file_name so a reader never sees a partial file.

    The temporary name ends in `.tmp`, which CDI readers skip; rename is atomic
    within one directory; the directory is fsynced so the rename survives a crash.
    """
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    target = directory / file_name
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix="spec.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(directory)
    killpoints.reached(killpoints.FILE_WRITE)
    return target


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def owned_files(directory: Path, owner: str) -> list[Path]:
    """Every spec file of `owner` in `directory`."""
    suffix = names.owner_suffix(owner)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.endswith(suffix) and p.is_file())


def remove_owned(directory: Path, owner: str, keep: frozenset[str] = frozenset()) -> list[Path]:
    """Remove the owner's spec files except those named in `keep`; returns what went."""
    removed: list[Path] = []
    for path in owned_files(directory, owner):
        if path.name in keep:
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
            killpoints.reached(killpoints.FILE_WRITE)
    if removed:
        _fsync_dir(directory)
    return removed
