"""One round of work for every family, driven as the kubelet drives it: the same call again
after each failure, until it succeeds or the deadline passes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hostdev_bus import NatsBus
from hostdev_events import subjects
from hostdev_events.dp import Allocations, ListAllocations
from hostdev_runtime.clock import Clock, SystemClock
from hostdev_testing.chaos.node import DP_USB, DP_VGPU, DRIVER, ChaosNode
from hostdev_testing.cluster import Allocated, Claim

T = TypeVar("T")

NAMESPACE = "chaos"
VF_SETTINGS = {"mode": "netdevice", "vlan": 100, "mac": "52:54:00:12:34:56", "trust": True}


@dataclass(frozen=True, slots=True)
class ClaimPlan:
    """One DRA claim of the round: its family, its device and its opaque parameters."""

    family: str
    device: str
    config: dict[str, Any] | None = None


# Every family of the acceptance host: a PCI function with its IOMMU group sibling, a VF in
# netdevice mode with settings, a VF moved to vfio-pci, a vGPU mdev, a USB stick, /dev/kvm.
DRA_CLAIMS = (
    ClaimPlan("pci", "pci-0000-01-00-0"),
    ClaimPlan("sriov-netdevice", "vf-0000-3b-02-2", VF_SETTINGS),
    ClaimPlan("sriov-vfio", "vf-0000-3b-02-3"),
    ClaimPlan("mdev", "mdev-0000-00-02-0-i915-gvtg-v5-4-0"),
    ClaimPlan("usb", "usb-0781-5581-4c530001230419117283"),
    ClaimPlan("hostpath", "kvm"),
)
# The device plugin half: a vGPU and a USB receiver by resource name.
DP_ALLOCATIONS = (
    (DP_VGPU, "mdev-0000-00-02-0-i915-gvtg-v5-8-0"),
    (DP_USB, "usb-046d-c52b-port-1-1"),
)


class GaveUp(Exception):
    """The kubelet's deadline passed without an answer it accepts."""


@dataclass(slots=True)
class Calls:
    """What the kubelet saw: attempts, failures it retried on, calls it gave up on."""

    attempts: int = 0
    retried: int = 0
    gave_up: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # each failure retried on, in order


@dataclass(slots=True)
class Kubelet:
    """The kubelet's retry loop over both simulators."""

    node: ChaosNode
    call_timeout: float
    deadline: float
    clock: Clock = field(default_factory=SystemClock)
    calls: Calls = field(default_factory=Calls)

    async def until_done(
        self, what: str, attempt: Callable[[], Awaitable[T]], failure: Callable[[T], str | None]
    ) -> T:
        """Call `attempt` until `failure` finds nothing wrong; back off as the kubelet does."""
        give_up_at = self.clock.monotonic() + self.deadline
        backoff, last = 0.02, ""
        while True:
            left = give_up_at - self.clock.monotonic()
            if left <= 0:
                self.calls.gave_up.append(f"{what}: {last}")
                raise GaveUp(f"{what}: no success within {self.deadline}s; last: {last}")
            self.calls.attempts += 1
            try:
                # A restart in progress: the kubelet would find the socket gone; wait for it.
                async with asyncio.timeout(left):
                    await self.node.wait_up()
                result = await attempt()
            except TimeoutError:
                last = "the node did not come back up"
                continue
            except Exception as err:  # every failure of a call is one the kubelet retries
                last = f"{type(err).__name__}: {err}"
            else:
                problem = failure(result)
                if problem is None:
                    return result
                last = problem
            self.calls.retried += 1
            self.calls.errors.append(f"{what}: {last}")
            await self.clock.sleep(min(backoff, max(left, 0)))
            backoff = min(backoff * 2, 0.5)

    async def prepare(self, claim: Claim) -> None:
        async def attempt() -> Any:
            plugin = await self.node.kubelet.wait_for_driver(DRIVER, timeout=self.call_timeout)
            return await plugin.prepare([claim], timeout=self.call_timeout)

        await self.until_done(f"prepare {claim.name}", attempt, lambda o: o.kubelet_failure)

    async def unprepare(self, claim: Claim) -> None:
        async def attempt() -> Any:
            plugin = await self.node.kubelet.wait_for_driver(DRIVER, timeout=self.call_timeout)
            return await plugin.unprepare([claim], timeout=self.call_timeout)

        await self.until_done(f"unprepare {claim.name}", attempt, lambda o: o.kubelet_failure)

    async def allocate(self, resource: str, device: str) -> None:
        async def attempt() -> Any:
            dp = self.node.dp_kubelet
            await dp.wait_for(
                resource,
                lambda ds: any(d.id == device and d.healthy for d in ds),
                timeout=self.call_timeout,
            )
            return await dp.allocate(resource, [device])

        await self.until_done(f"allocate {device}", attempt, lambda _: None)
        # The kubelet records the container's devices at once; pod-resources lists them
        # until the pod is gone (the gateway releases only IDs no pod holds).
        self.node.dp_kubelet.assign(_pod(device), NAMESPACE, "main", resource, [device])

    async def release_device_plugin(self) -> None:
        """The pods are gone: pod-resources lists nothing, the gateway releases every ID."""
        for _, device in DP_ALLOCATIONS:
            self.node.dp_kubelet.unassign(_pod(device), NAMESPACE)
        bus = NatsBus(self.node.nc)

        async def attempt() -> int:
            # A lost answer costs the call deadline, not the default ten seconds: the
            # gateway's pass goes on without it, and the listing below tells what it did.
            await self.node.services.reconcile_pod_resources(self.call_timeout)
            left = 0
            for resource, _ in DP_ALLOCATIONS:
                listed = await bus.request(
                    subjects.dp_list(self.node.config.node),
                    ListAllocations(resource=resource),
                    Allocations,
                    self.call_timeout,
                )
                left += len(listed.ids)
            return left

        await self.until_done(
            "release device-plugin IDs", attempt, lambda n: f"{n} still allocated" if n else None
        )


def _pod(device: str) -> str:
    return f"pod-{device}"


async def make_claims(node: ChaosNode, tag: str) -> list[tuple[ClaimPlan, Claim]]:
    """Fresh allocated claims for one round (new UIDs, as new pods bring)."""
    made = []
    for plan in DRA_CLAIMS:
        claim = await node.cluster.allocated_claim(
            NAMESPACE, f"{tag}-{plan.family}", [Allocated("dev", plan.device)], config=plan.config
        )
        made.append((plan, claim))
    return made
