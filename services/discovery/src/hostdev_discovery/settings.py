"""Discovery settings."""

from __future__ import annotations

from hostdev_runtime.settings import CommonSettings


class Settings(CommonSettings, frozen=True, kw_only=True):
    """Everything discovery reads from the environment (see CommonSettings for the rest).

    kube_api_url:   API server URL (HOSTDEV_KUBE_API_URL); empty means in-cluster, then kubeconfig.
    host_root:      where the host's / is visible (HOSTDEV_HOST_ROOT); read-only.
    devices_config: the device selection file (HOSTDEV_DEVICES_CONFIG).
    rescan_seconds: how often the host is scanned again (HOSTDEV_RESCAN_SECONDS).
    publish_slices: write ResourceSlices (HOSTDEV_PUBLISH_SLICES); off for device-plugin-only nodes.
    """

    kube_api_url: str = ""
    host_root: str = "/"
    devices_config: str = "/etc/hostdev/devices.yaml"
    rescan_seconds: float = 30.0
    publish_slices: bool = True
