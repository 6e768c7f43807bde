"""Preparer settings."""

from __future__ import annotations

from typing import Annotated

import msgspec

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
    orphan_grace_seconds: how long a checkpoint or ledger hold must have had no claim behind
                    it (deleted, replaced by one of another UID, no longer allocated to this
                    node) before the preparer unprepares it itself (HOSTDEV_ORPHAN_GRACE_SECONDS);
                    the kubelet normally unprepares first, the wait keeps out of its way.
    stuck_preparing_seconds: how long a prepare may stay unfinished, its record unchanged,
                    before it is rolled back (HOSTDEV_STUCK_PREPARING_SECONDS); the kubelet
                    gives a call 45 s and retries for 90 s, so the default is twice that.
    orphan_scan_seconds: how often checkpoints and holds are compared with the watched claims
                    (HOSTDEV_ORPHAN_SCAN_SECONDS); claims are watched, this reads only NATS KV.
    claims_from_watch: whether a prepare reads its claim from the watched claims when they
                    have it under the kubelet's UID, sparing a GET (HOSTDEV_CLAIMS_FROM_WATCH);
                    a claim not seen yet, re-created or once unprepared is always read with a GET.
    checkpoints_in_memory: whether this node's checkpoints are read from memory, loaded at
                    start and kept by this process's own writes (HOSTDEV_CHECKPOINTS_IN_MEMORY);
                    sound because the preparer is their only writer.
    request_batch:  whether concurrent requests to the allocator (reserve, release) and the
                    CDI writer (write, remove) travel as one NATS message per subject while
                    one is out (HOSTDEV_REQUEST_BATCH); each is answered as if it went alone.
    """

    kube_api_url: str = ""
    host_root: str = "/"
    devices_config: str = "/etc/hostdev/devices.yaml"
    device_metadata: str = "pci,sriov,mdev"
    boot_id_file: str = "/proc/sys/kernel/random/boot_id"
    orphan_grace_seconds: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    stuck_preparing_seconds: Annotated[float, msgspec.Meta(ge=0)] = 180.0
    orphan_scan_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    claims_from_watch: bool = True
    checkpoints_in_memory: bool = True
    request_batch: bool = True
