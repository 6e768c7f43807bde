"""The cluster's ResourceClaims as a list-then-watch keeps them: by UID, with whether each is ours.

The claims allocated here are kept whole, so a prepare can read its claim from memory
rather than GET it (see ClaimCache.fresh).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from hostdev_kube import ClaimList, Gone, KubeError, ResourceClaim, WatchEvent
from hostdev_kube.models import (
    Allocation,
    ClaimStatus,
    DeviceAllocation,
    NodeSelector,
    NodeSelectorRequirement,
    ObjectMeta,
)
from hostdev_preparer.selection import POD_CLAIM_NAME_ANNOTATION
from hostdev_runtime.clock import Clock

logger = logging.getLogger(__name__)

# A watch is re-opened after this long, from where it stopped (servers cap it anyway).
WATCH_SECONDS = 300
# One empty mapping for every trimmed claim's labels and annotations (never changed).
_NONE: dict[str, str] = {}
# Waits between attempts while the API server cannot be reached, doubling up to the cap.
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0


class WatchingKube(Protocol):
    """List and watch ResourceClaims of every namespace (hostdev_kube.Kube does)."""

    async def list_claims(self) -> ClaimList: ...

    def watch_claims(
        self, resource_version: str, timeout_seconds: int = WATCH_SECONDS
    ) -> AsyncIterator[WatchEvent]: ...


@dataclass(frozen=True, slots=True)
class SeenClaim:
    """What the orphan check needs of a claim."""

    namespace: str
    name: str
    uid: str
    allocated_here: bool


def selects_node(selector: NodeSelector | None, node: str) -> bool:
    """Whether an allocation's node selector may select `node`.

    Only the node's name is known here; a requirement on anything else (node labels) is
    taken as met, so a selector is never read as "not this node" on a guess.
    """
    if selector is None or not selector.node_selector_terms:
        return True
    for term in selector.node_selector_terms:
        if all(_name_allows(r, node) for r in term.match_fields):
            return True
    return False


def _name_allows(requirement: NodeSelectorRequirement, node: str) -> bool:
    if requirement.key != "metadata.name":
        return True
    if requirement.operator == "In":
        return node in requirement.values
    if requirement.operator == "NotIn":
        return node not in requirement.values
    return True


def allocated_here(claim: ResourceClaim, driver: str, node: str) -> bool:
    """Whether the claim is allocated with at least one device of this driver on this node."""
    allocation = claim.status.allocation
    if allocation is None:
        return False
    ours = any(r.driver == driver and r.pool == node for r in allocation.devices.results)
    return ours and selects_node(allocation.node_selector, node)


@dataclass(slots=True)
class ClaimCache:
    """Claims by UID as last listed and watched.

    `synced` turns true with the first complete list and stays so: from then on, a UID
    missing here was deleted (or never was) as far as the API server last told us.

    Claims allocated here are also kept whole (`whole`), for prepares to read. A UID once
    unprepared (`spent`) is never served from memory again: the claim may have been
    deallocated and allocated anew while the watch lags behind, and only a GET tells.
    """

    driver: str
    node: str
    by_uid: dict[str, SeenClaim] = field(default_factory=dict)
    resource_version: str = ""
    synced: bool = False
    whole: dict[str, ResourceClaim] = field(default_factory=dict)
    spent: set[str] = field(default_factory=set)

    def _seen(self, claim: ResourceClaim) -> SeenClaim:
        meta = claim.metadata
        return SeenClaim(
            meta.namespace, meta.name, meta.uid, allocated_here(claim, self.driver, self.node)
        )

    def _keep(self, claim: ResourceClaim) -> None:
        seen = self._seen(claim)
        self.by_uid[seen.uid] = seen
        if seen.allocated_here:
            self.whole[seen.uid] = self._trimmed(claim)
        else:
            self.whole.pop(seen.uid, None)

    def _trimmed(self, claim: ResourceClaim) -> ResourceClaim:
        """What a prepare reads of a claim: names, UID, generation, the pod's claim name,
        this driver's results and the configs. Labels, other annotations, the node selector
        and other drivers' results are not kept for the claims waiting to be prepared."""
        meta = claim.metadata
        allocation = claim.status.allocation
        assert allocation is not None  # allocated here
        pod_claim = meta.annotations.get(POD_CLAIM_NAME_ANNOTATION)
        return ResourceClaim(
            metadata=ObjectMeta(
                name=meta.name,
                namespace=meta.namespace,
                uid=meta.uid,
                generation=meta.generation,
                annotations=_NONE if pod_claim is None else {POD_CLAIM_NAME_ANNOTATION: pod_claim},
                labels=_NONE,
            ),
            status=ClaimStatus(
                allocation=Allocation(
                    devices=DeviceAllocation(
                        results=tuple(
                            r for r in allocation.devices.results if r.driver == self.driver
                        ),
                        config=allocation.devices.config,
                    )
                )
            ),
        )

    def replace(self, listed: ClaimList) -> None:
        """Everything the list returned, and nothing else."""
        self.by_uid = {}
        self.whole = {}
        for claim in listed.items:
            self._keep(claim)
        self.spent &= self.by_uid.keys()
        self.resource_version = listed.metadata.resource_version
        self.synced = True

    def apply(self, event: WatchEvent) -> None:
        """One watch event; a bookmark only moves the resourceVersion on."""
        # Through JSON, not msgspec.convert: a config's opaque parameters are kept as raw
        # JSON (msgspec.Raw), which only a JSON decode can fill.
        claim = msgspec.json.decode(msgspec.json.encode(event.object), type=ResourceClaim)
        if event.type in ("ADDED", "MODIFIED"):
            self._keep(claim)
        elif event.type == "DELETED":
            self.by_uid.pop(claim.metadata.uid, None)
            self.whole.pop(claim.metadata.uid, None)
            self.spent.discard(claim.metadata.uid)
        if claim.metadata.resource_version:
            self.resource_version = claim.metadata.resource_version

    def fresh(self, namespace: str, name: str, uid: str) -> ResourceClaim | None:
        """The claim as last watched, when it can stand in for a GET; else None.

        Only a claim allocated here under this very UID, namespace and name, never
        unprepared since: a claim re-created under its name has another UID (a miss), one
        whose allocation the watch has not shown yet is not allocated here (a miss).
        """
        if uid in self.spent:
            return None
        claim = self.whole.get(uid)
        if claim is None or (claim.metadata.namespace, claim.metadata.name) != (namespace, name):
            return None
        return claim

    def prepared(self, uid: str) -> None:
        """The claim is prepared: its record answers from now on, so the claim is no longer
        kept for a prepare (until the watch shows it changed)."""
        self.whole.pop(uid, None)

    def unprepared(self, uid: str) -> None:
        """The claim was unprepared: its next prepare, if any, reads it from the API.

        Kept until the claim's deletion is watched, or a relist no longer has it.
        """
        self.whole.pop(uid, None)
        self.spent.add(uid)

    def named(self, namespace: str, name: str) -> SeenClaim | None:
        """The claim now holding this name, whatever its UID."""
        for seen in self.by_uid.values():
            if (seen.namespace, seen.name) == (namespace, name):
                return seen
        return None


async def follow(cache: ClaimCache, kube: WatchingKube, clock: Clock) -> None:
    """List, then watch from the list's resourceVersion, forever.

    An interrupted watch resumes from the last resourceVersion seen; only a 410 Gone
    (that version was compacted away) lists again. While the API server cannot be
    reached the cache keeps what it had: nothing is concluded from silence.
    """
    retry = RETRY_FIRST_SECONDS
    while True:
        try:
            if not cache.resource_version:
                cache.replace(await kube.list_claims())
            events = 0
            async for event in kube.watch_claims(cache.resource_version, WATCH_SECONDS):
                events += 1
                retry = RETRY_FIRST_SECONDS
                cache.apply(event)
            if events:
                continue  # the watch timed out as asked: open the next one at once
            # A stream that ends without a single event (a server going away) is retried
            # after a wait, so a server that keeps closing it is not hammered.
        except Gone:
            logger.info("claim watch expired; listing again")
            cache.resource_version = ""
            continue
        except KubeError as err:
            # Said loudly once per outage, quietly on every retry after.
            level = logging.WARNING if retry == RETRY_FIRST_SECONDS else logging.INFO
            logger.log(
                level,
                "cannot watch ResourceClaims; orphan checks keep what they knew",
                extra={"error": str(err), "retry_seconds": retry},
            )
        except (msgspec.ValidationError, msgspec.DecodeError):
            # An object this code cannot read: list again rather than act on a partial view.
            logger.exception("unreadable claim in the watch; listing again")
            cache.resource_version = ""
        await clock.sleep(retry)
        retry = min(retry * 2, RETRY_MAX_SECONDS)
