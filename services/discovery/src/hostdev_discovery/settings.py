"""Discovery settings."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from hostdev_runtime.settings import CommonSettings


class Settings(CommonSettings, frozen=True, kw_only=True):
    """Everything discovery reads from the environment (see CommonSettings for the rest).

    kube_api_url:   API server URL (HOSTDEV_KUBE_API_URL); empty means in-cluster, then kubeconfig.
    host_root:      where the host's / is visible (HOSTDEV_HOST_ROOT); read-only.
    devices_config: the device selection file (HOSTDEV_DEVICES_CONFIG).
    scan_seconds:   how often the host is scanned for devices and their health
                    (HOSTDEV_SCAN_SECONDS).
    debounce_seconds: how long a health change must hold before it is published
                    (HOSTDEV_DEBOUNCE_SECONDS), so a flapping device does not storm the bus.
    gone_seconds:   how long a vanished device stays in the inventory as unhealthy before
                    it is dropped (HOSTDEV_GONE_SECONDS).
    aer_quiet_seconds: how long a device's AER error counters must stay unchanged before the
                    device they marked unhealthy counts as healthy again, after the
                    unhealthy state was published (HOSTDEV_AER_QUIET_SECONDS); then
                    debounce_seconds applies as to every change.
    publish_slices: write ResourceSlices (HOSTDEV_PUBLISH_SLICES); off for device-plugin-only nodes.
    taint_unhealthy: put a device taint on unhealthy devices in the slices
                    (HOSTDEV_TAINT_UNHEALTHY; the DRADeviceTaints API is beta in 1.36, alpha before).
    taint_effect:   NoSchedule (keep new claims away) or NoExecute (also evict pods)
                    (HOSTDEV_TAINT_EFFECT).
    shared_copies:  how many numbered copies of each shared device are published while the
                    API server drops `allowMultipleAllocations` (DRAConsumableCapacity off)
                    (HOSTDEV_SHARED_COPIES): that many claims can hold it at once. 0 publishes
                    none: shared devices then become exclusive, which is logged at ERROR.
    shared_probe_seconds: how often a dry-run create asks the API server whether it keeps
                    `allowMultipleAllocations` (HOSTDEV_SHARED_PROBE_SECONDS), so the copies
                    come and go with the feature gate; also asked at start-up.
    """

    kube_api_url: str = ""
    host_root: str = "/"
    devices_config: str = "/etc/hostdev/devices.yaml"
    scan_seconds: float = 5.0
    debounce_seconds: float = 2.0
    gone_seconds: float = 300.0
    aer_quiet_seconds: float = 60.0
    publish_slices: bool = True
    taint_unhealthy: bool = False
    taint_effect: Literal["NoSchedule", "NoExecute"] = "NoSchedule"
    shared_copies: Annotated[int, msgspec.Meta(ge=0, le=128)] = 16
    shared_probe_seconds: Annotated[float, msgspec.Meta(gt=0)] = 300.0
