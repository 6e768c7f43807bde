"""sysfs/devfs access under an injected root: synchronous, small, never escaping the root."""

from hostdev_sysfs.root import HostRoot, PathEscapesRoot

__all__ = ["HostRoot", "PathEscapesRoot"]
