"""A host filesystem seen through a root directory (`/` in production, a fake tree in tests)."""

from __future__ import annotations

import errno
import os
from pathlib import Path, PurePosixPath

# What Path.exists() takes for "not there" rather than raising (pathlib's own list).
_ABSENT = frozenset((errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP))


class PathEscapesRoot(ValueError):
    """A configured or discovered path would leave the root (`..`, or a symlink out)."""


class HostRoot:
    """Resolves absolute host paths such as `/dev/kvm` under one root directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        # The root as a string ending in one slash, for `real`; "/" stays "/".
        self._prefix = str(self.root).rstrip("/") + "/"

    def path(self, host_path: str) -> Path:
        """The real path of `host_path` under the root, lexically checked (no `..`)."""
        return Path(self.real(host_path))

    def real(self, host_path: str) -> str:
        """`path` as a string: the same checks and result, without building Path objects
        (discovery maps thousands of paths per scan; pathlib's parsing dominated it)."""
        if not host_path.startswith("/"):
            raise PathEscapesRoot(f"{host_path!r} is not an absolute path")
        # The components pathlib keeps: empty ones (repeated slashes) and "." are dropped.
        parts = [p for p in host_path.split("/") if p and p != "."]
        if ".." in parts:
            raise PathEscapesRoot(f"{host_path!r} contains '..'")
        if not parts:
            return str(self.root)
        return self._prefix + "/".join(parts)

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
        skip = len(self._prefix) - 1  # keep the slash: "<root>/dev/x" -> "/dev/x"
        return sorted(str(p)[skip:] or "/" for p in self.root.glob(relative))

    def exists(self, host_path: str) -> bool:
        """Whether the path exists (a dangling symlink does not)."""
        real = self.real(host_path)  # PathEscapesRoot is raised, not taken for absent
        try:
            os.stat(real)
        except OSError as err:
            if err.errno in _ABSENT:
                return False
            raise
        except ValueError:  # an embedded NUL byte, as Path.exists() answers it
            return False
        return True

    def read_text(self, host_path: str) -> str:
        """A sysfs attribute's content without the trailing newline."""
        return self.path(host_path).read_text().rstrip("\n")

    def readlink_name(self, host_path: str) -> str | None:
        """The last component of a symlink's target (driver, iommu_group), or None."""
        link = self.path(host_path)
        if not link.is_symlink():
            return None
        return PurePosixPath(os.readlink(link)).name
