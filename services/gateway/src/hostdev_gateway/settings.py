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
                  rolling update: DRA socket names then carry the UID, device plugin socket
                  names its first 8 characters (HOSTDEV_POD_UID).
    devices_config: the device selection file; its `resources` list names the device
                  plugin resources (HOSTDEV_DEVICES_CONFIG). A missing file offers none.
    device_plugins_dir: the kubelet's device plugin directory with `kubelet.sock`
                  (HOSTDEV_DEVICE_PLUGINS_DIR).
    pod_resources_socket: the kubelet's pod-resources socket, to learn which device plugin
                  IDs pods still use (HOSTDEV_POD_RESOURCES_SOCKET).
    pod_resources_seconds: how often that is asked (HOSTDEV_POD_RESOURCES_SECONDS); also how
                  often a failed rebuild of a device-plugin allocation pods hold is retried.
    health_resend_seconds: how often the DRA health stream repeats the full list
                  (HOSTDEV_HEALTH_RESEND_SECONDS); well under the kubelet's 30 s staleness.
    health_timeout_seconds: how long the kubelet may go without hearing of a device before it
                  shows it as Unknown (HOSTDEV_HEALTH_TIMEOUT_SECONDS; 0 = the kubelet's 30 s).
    dp_cdi:       answer Allocate with CDI device names (true) or with device nodes and
                  mounts for runtimes without CDI (false) (HOSTDEV_DP_CDI).
    claim_batch:  the most claims one request to the preparer carries when kubelet calls
                  that arrive while a request is out are sent together (HOSTDEV_CLAIM_BATCH);
                  0 sends each call as its own request. On by default: it measured about a
                  third less CPU per cycle at 16 and 64 concurrent calls.
    claim_batch_in_flight: how many requests of one kind (prepare, unprepare) go out before
                  further calls wait to be batched (HOSTDEV_CLAIM_BATCH_IN_FLIGHT).
    claim_batch_hold_ms: the longest a call waits behind an unanswered request before the
                  waiting calls go anyway (HOSTDEV_CLAIM_BATCH_HOLD_MS).
    """

    plugins_dir: str = "/var/lib/kubelet/plugins"
    registry_dir: str = "/var/lib/kubelet/plugins_registry"
    pod_uid: str = ""
    devices_config: str = "/etc/hostdev/devices.yaml"
    device_plugins_dir: str = "/var/lib/kubelet/device-plugins"
    pod_resources_socket: str = "/var/lib/kubelet/pod-resources/kubelet.sock"
    pod_resources_seconds: float = 10.0
    dp_cdi: bool = True
    health_resend_seconds: float = 10.0
    health_timeout_seconds: int = 30
    claim_batch: int = 64
    claim_batch_in_flight: int = 1
    claim_batch_hold_ms: int = 50
