"""Preparer settings."""

from __future__ import annotations

from hostdev_runtime.settings import CommonSettings


class Settings(CommonSettings, frozen=True, kw_only=True):
    """Everything the preparer reads from the environment (see CommonSettings for the rest).

    kube_api_url:   API server URL (HOSTDEV_KUBE_API_URL); empty means in-cluster, then kubeconfig.
    host_root:      where the host's / is visible (HOSTDEV_HOST_ROOT); sysfs writes go under it.
    devices_config: the device selection file (HOSTDEV_DEVICES_CONFIG), the same one discovery reads.
    device_metadata: the device families whose requests get a KEP-5304 device metadata file,
                    mounted through CDI (HOSTDEV_DEVICE_METADATA): comma-separated, `all`, or
                    `none`. KubeVirt finds its PCI, VF and vGPU devices this way; for host
                    paths the file tells a workload little, and costs two more files a claim.
    boot_id_file:   where the kernel's boot ID is (HOSTDEV_BOOT_ID_FILE); a claim completed
                    in another boot is prepared again, since reboots clear specs and bindings.
    """

    kube_api_url: str = ""
    host_root: str = "/"
    devices_config: str = "/etc/hostdev/devices.yaml"
    device_metadata: str = "pci,sriov,mdev"
    boot_id_file: str = "/proc/sys/kernel/random/boot_id"
