"""The cluster's ResourceClaims as a list-then-watch keeps them: by UID, with whether each is ours.

What a prepare reads of the claims allocated here is kept too, so a prepare can read its
claim from memory rather than GET it (see ClaimCache.fresh).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from hostdev_kube import ClaimList, Gone, KubeError, ResourceClaim, WatchEvent
from hostdev_kube.models import (
    Allocation,
    AllocationConfig,
    AllocationResult,
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

    def list_claim_pages(self) -> AsyncIterator[ClaimList]: ...

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


class _Kept(msgspec.Struct, frozen=True, array_like=True):
    """What a prepare reads of a claim allocated here besides its names and UID (which
    SeenClaim has): the generation, the pod's claim name, this driver's results and the
    configs. Kept encoded, a few hundred bytes a claim: labels, other annotations, the node
    selector and other drivers' results are not kept for the claims waiting to be prepared."""

    generation: int
    pod_claim: str | None
    results: tuple[AllocationResult, ...]
    config: tuple[AllocationConfig, ...]


# JSON, not MessagePack: a config's opaque parameters are raw JSON (msgspec.Raw), kept as is.
_encode_kept = msgspec.json.Encoder().encode
_decode_kept = msgspec.json.Decoder(_Kept).decode


@dataclass(slots=True)
class _Claims:
    """Claims by UID as a list or a watch showed them: whether each is ours, and what a
    prepare reads of those allocated here (encoded)."""

    driver: str
    node: str
    by_uid: dict[str, SeenClaim] = field(default_factory=dict)
    kept: dict[str, bytes] = field(default_factory=dict)

    def keep(self, claim: ResourceClaim) -> None:
        meta = claim.metadata
        here = allocated_here(claim, self.driver, self.node)
        # One string for a namespace's every claim, rather than one per decoded claim.
        seen = SeenClaim(sys.intern(meta.namespace), meta.name, meta.uid, here)
        self.by_uid[seen.uid] = seen
        if here:
            self.kept[seen.uid] = self._compact(claim)
        else:
            self.kept.pop(seen.uid, None)

    def _compact(self, claim: ResourceClaim) -> bytes:
        allocation = claim.status.allocation
        assert allocation is not None  # allocated here
        devices = allocation.devices
        return _encode_kept(
            _Kept(
                generation=claim.metadata.generation,
                pod_claim=claim.metadata.annotations.get(POD_CLAIM_NAME_ANNOTATION),
                results=tuple(r for r in devices.results if r.driver == self.driver),
                config=devices.config,
            )
        )


@dataclass(slots=True)
class Listing:
    """A list of every claim being read page by page (ClaimCache.listing).

    The cache takes it only once the last page is in (ClaimCache.replace), so a list cut
    short (a snapshot expired between pages, a lost connection) leaves the cache as it was.
    """

    claims: _Claims
    resource_version: str = ""

    def add(self, page: ClaimList) -> None:
        """One page: the pages of one list share the first one's resourceVersion."""
        if not self.resource_version:
            self.resource_version = page.metadata.resource_version
        for claim in page.items:
            self.claims.keep(claim)


@dataclass(slots=True)
class ClaimCache:
    """Claims by UID as last listed and watched.

    `synced` turns true with the first complete list and stays so: from then on, a UID
    missing here was deleted (or never was) as far as the API server last told us.

    What a prepare reads of the claims allocated here is also kept, compactly, for
    prepares to read (`fresh`). A UID once unprepared (`spent`) is never served from
    memory again: the claim may have been deallocated and allocated anew while the watch
    lags behind, and only a GET tells.
    """

    driver: str
    node: str
    resource_version: str = ""
    synced: bool = False
    spent: set[str] = field(default_factory=set)
    _claims: _Claims = field(init=False)

    def __post_init__(self) -> None:
        self._claims = _Claims(self.driver, self.node)

    @property
    def by_uid(self) -> dict[str, SeenClaim]:
        """Every claim listed or watched, by UID."""
        return self._claims.by_uid

    @property
    def waiting(self) -> int:
        """How many claims allocated here are kept for a prepare to read."""
        return len(self._claims.kept)

    def listing(self) -> Listing:
        """An empty list to fill page by page, then give to `replace`."""
        return Listing(_Claims(self.driver, self.node))

    def replace(self, listed: Listing | ClaimList) -> None:
        """Everything the list returned, and nothing else."""
        if isinstance(listed, ClaimList):
            one_page = self.listing()
            one_page.add(listed)
            listed = one_page
        self._claims = listed.claims
        self.spent &= self.by_uid.keys()
        self.resource_version = listed.resource_version
        self.synced = True

    def apply(self, event: WatchEvent) -> None:
        """One watch event; a bookmark only moves the resourceVersion on."""
        # Through JSON, not msgspec.convert: a config's opaque parameters are kept as raw
        # JSON (msgspec.Raw), which only a JSON decode can fill.
        claim = msgspec.json.decode(msgspec.json.encode(event.object), type=ResourceClaim)
        if event.type in ("ADDED", "MODIFIED"):
            self._claims.keep(claim)
        elif event.type == "DELETED":
            self._claims.by_uid.pop(claim.metadata.uid, None)
            self._claims.kept.pop(claim.metadata.uid, None)
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
        kept = self._claims.kept.get(uid)
        seen = self._claims.by_uid.get(uid)
        if kept is None or seen is None or (seen.namespace, seen.name) != (namespace, name):
            return None
        return _claim(seen, _decode_kept(kept))

    def prepared(self, uid: str) -> None:
        """The claim is prepared: its record answers from now on, so the claim is no longer
        kept for a prepare (until the watch shows it changed)."""
        self._claims.kept.pop(uid, None)

    def unprepared(self, uid: str) -> None:
        """The claim was unprepared: its next prepare, if any, reads it from the API.

        Kept until the claim's deletion is watched, or a relist no longer has it.
        """
        self._claims.kept.pop(uid, None)
        self.spent.add(uid)

    def named(self, namespace: str, name: str) -> SeenClaim | None:
        """The claim now holding this name, whatever its UID."""
        for seen in self.by_uid.values():
            if (seen.namespace, seen.name) == (namespace, name):
                return seen
        return None


def _claim(seen: SeenClaim, kept: _Kept) -> ResourceClaim:
    """The claim as a prepare reads it, from what was kept of it."""
    return ResourceClaim(
        metadata=ObjectMeta(
            name=seen.name,
            namespace=seen.namespace,
            uid=seen.uid,
            generation=kept.generation,
            annotations=_NONE
            if kept.pod_claim is None
            else {POD_CLAIM_NAME_ANNOTATION: kept.pod_claim},
            labels=_NONE,
        ),
        status=ClaimStatus(
            allocation=Allocation(
                devices=DeviceAllocation(results=kept.results, config=kept.config)
            )
        ),
    )


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
                listing = cache.listing()
                async for page in kube.list_claim_pages():
                    listing.add(page)
                cache.replace(listing)
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
