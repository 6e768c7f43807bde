"""Gateway settings."""

from __future__ import annotations

from hostdev_runtime.settings import CommonSettings


class Settings(CommonSettings, frozen=True, kw_only=True):
    """Everything the gateway reads from the environment (see CommonSettings for the rest).

    plugins_dir:  the kubelet's plugin data directory (HOSTDEV_PLUGINS_DIR); the DRA socket
                  is `<plugins_dir>/<driver>/dra.sock`.
    registry_dir: the directory the kubelet watches for registration sockets
                  (HOSTDEV_REGISTRY_DIR); ours is `<registry_dir>/<driver>-reg.sock`.
    pod_uid:      set (from the downward API) to run two instances side by side during a
                  rolling update: socket names then carry the UID (HOSTDEV_POD_UID).
    """

    plugins_dir: str = "/var/lib/kubelet/plugins"
    registry_dir: str = "/var/lib/kubelet/plugins_registry"
    pod_uid: str = ""
