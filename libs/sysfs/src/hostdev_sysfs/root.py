"""A host filesystem seen through a root directory (`/` in production, a fake tree in tests)."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath


class PathEscapesRoot(ValueError):
    """A configured or discovered path would leave the root (`..`, or a symlink out)."""


class HostRoot:
    """Resolves absolute host paths such as `/dev/kvm` under one root directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def path(self, host_path: str) -> Path:
        """The real path of `host_path` under the root, lexically checked (no `..`)."""
        pure = PurePosixPath(host_path)
        if not pure.is_absolute():
            raise PathEscapesRoot(f"{host_path!r} is not an absolute path")
        if ".." in pure.parts:
            raise PathEscapesRoot(f"{host_path!r} contains '..'")
        return self.root.joinpath(*pure.parts[1:])

    def resolve(self, host_path: str) -> Path:
        """Like `path`, then following symlinks; the result must stay under the root."""
        real = Path(os.path.realpath(self.path(host_path)))
        if real != self.root and self.root not in real.parents:
            raise PathEscapesRoot(f"{host_path!r} resolves outside the root to {real}")
        return real

    def host_path_of(self, real: Path) -> str:
        """The host path (`/dev/...`) of a real path under the root."""
        relative = real.relative_to(self.root)
        return "/" + relative.as_posix() if relative.parts else "/"

    def glob(self, pattern: str) -> list[str]:
        """Host paths matching an absolute glob pattern, sorted."""
        pure = PurePosixPath(pattern)
        if not pure.is_absolute() or ".." in pure.parts:
            raise PathEscapesRoot(f"{pattern!r} must be absolute and free of '..'")
        relative = PurePosixPath(*pure.parts[1:]).as_posix()
        return sorted(self.host_path_of(p) for p in self.root.glob(relative))

    def exists(self, host_path: str) -> bool:
        """Whether the path exists (a dangling symlink does not)."""
        return self.path(host_path).exists()

    def read_text(self, host_path: str) -> str:
        """A sysfs attribute's content without the trailing newline."""
        return self.path(host_path).read_text().rstrip("\n")

    def readlink_name(self, host_path: str) -> str | None:
        """The last component of a symlink's target (driver, iommu_group), or None."""
        link = self.path(host_path)
        if not link.is_symlink():
            return None
        return PurePosixPath(os.readlink(link)).name
