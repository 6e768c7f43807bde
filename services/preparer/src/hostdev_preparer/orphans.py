"""Claims the kubelet forgot: checkpoints and ledger holds nobody will unprepare.

The kubelet unprepares a claim before the claim goes away; when it does not (it was down
while the pod was force-deleted, a call was lost), what was done for the claim stays: a
vfio binding, a CDI spec, a ledger hold. This compares the node's checkpoints and holds
with the API server's ResourceClaims (listed and watched, see claimwatch) and, after a
grace period, undoes what no claim stands behind, through the same unprepare path the
kubelet's NodeUnprepareResources takes (per-claim lock, revision-checked undo).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

from hostdev_bus import KvStore
from hostdev_events import dp, subjects
from hostdev_events.alloc import Hold, Released, ReleaseDevices
from hostdev_events.cdi import CdiSpecsRemoved, RemoveCdiSpecs
from hostdev_events.claims import ClaimRef, UnprepareClaims
from hostdev_events.state import Checkpoint, ClaimStep
from hostdev_kube import KubeError, NotFound
from hostdev_preparer.claimwatch import ClaimCache, allocated_here
from hostdev_preparer.flow import ClaimReader, Deps
from hostdev_preparer.handlers import on_unprepare
from hostdev_runtime import telemetry

logger = logging.getLogger(__name__)

CLAIM_DELETED = "claim-deleted"  # no claim with this UID, nor another with its name
CLAIM_REPLACED = "claim-replaced"  # the name now belongs to a claim with another UID
NOT_ALLOCATED_HERE = "not-allocated-here"  # deallocated, or allocated to another node
STUCK_PREPARING = "stuck-preparing"  # a prepare that nobody finished or retried
HOLD_WITHOUT_CHECKPOINT = "hold-without-checkpoint"  # a ledger hold with no claim record
REASONS = (CLAIM_DELETED, CLAIM_REPLACED, NOT_ALLOCATED_HERE, STUCK_PREPARING)

# The unprepare of one forgotten claim gets as long as the kubelet gives its own calls.
UNPREPARE_TIMEOUT_MS = 45_000


class OrphanMetrics:
    """What the orphan checks did, and what waits out its grace period."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.cleaned = Counter(
            "hostdev_orphans_cleaned",
            "Forgotten claims unprepared and ledger holds released, by reason.",
            ["reason"],
            registry=registry,
        )
        self.pending = Gauge(
            "hostdev_orphans_pending",
            "Checkpoints and holds found orphaned, waiting out their grace period, by reason.",
            ["reason"],
            registry=registry,
        )
        self.failed = Counter(
            "hostdev_orphan_cleanup_failures",
            "Attempts to clean an orphan that failed (retried at the next check), by reason.",
            ["reason"],
            registry=registry,
        )


@dataclass(slots=True)
class _Suspect:
    """Something found orphaned: since when, and at which checkpoint revision."""

    reason: str
    since: float
    revision: int = 0


@dataclass(slots=True)
class Timings:
    """How long to wait before acting, and how often to compare."""

    grace: float
    stuck_preparing: float
    scan: float


@dataclass(slots=True)
class Orphans:
    """Compares checkpoints and holds with the claims, and cleans up what is left over."""

    deps: Deps
    ledger: KvStore[Hold]
    cache: ClaimCache
    timings: Timings
    metrics: OrphanMetrics
    _claims: dict[str, _Suspect] = field(default_factory=dict)
    _holds: dict[str, _Suspect] = field(default_factory=dict)

    async def run(self, stopping: asyncio.Event) -> None:
        """Check now, then every scan period, until the service stops.

        Watch events only update the view: a check reads every checkpoint and hold, and
        claims change all over a cluster, while nothing here is due before its grace period.
        """
        while True:
            try:
                await self.check()
            except Exception:
                # One failed check (NATS away, say) must not end the checks for good.
                logger.exception("orphan check failed; trying again at the next one")
            if stopping.is_set():
                # The stop's cancel can be lost in a NATS request of the check (see
                # hostdev_runtime.runner.end_tasks): end here rather than sleep on.
                return
            await self.deps.clock.sleep(self.timings.scan)

    async def check(self) -> None:
        """One comparison; acts on whatever has been orphaned for long enough."""
        now = self.deps.clock.monotonic()
        records = await self._checkpoints()
        await self._check_claims(records, now)
        await self._check_holds({r.claim.uid for r, _ in records.values()}, now)
        for reason in (*REASONS, HOLD_WITHOUT_CHECKPOINT):
            self.metrics.pending.labels(reason).set(
                sum(s.reason == reason for s in (*self._claims.values(), *self._holds.values()))
            )

    async def _checkpoints(self) -> dict[str, tuple[Checkpoint, int]]:
        prefix = subjects.device_key_prefix(self.deps.node)
        records: dict[str, tuple[Checkpoint, int]] = {}
        for key in await self.deps.checkpoints.keys(prefix):
            found = await self.deps.checkpoints.get(key)
            if found is not None and not found[0].claim.uid.startswith(dp.OWNER_PREFIX):
                records[found[0].claim.uid] = found  # device-plugin records: the gateway's
        return records

    # --- claims -----------------------------------------------------------------------------

    def _claim_reason(self, checkpoint: Checkpoint) -> str | None:
        """Why this checkpoint has no claim behind it in the watched view, if it has none."""
        if not self.cache.synced:
            return None  # never listed yet: absence means nothing
        ref = checkpoint.claim
        seen = self.cache.by_uid.get(ref.uid)
        if seen is None:
            return CLAIM_REPLACED if self.cache.named(ref.namespace, ref.name) else CLAIM_DELETED
        return None if seen.allocated_here else NOT_ALLOCATED_HERE

    async def _check_claims(self, records: dict[str, tuple[Checkpoint, int]], now: float) -> None:
        for uid in set(self._claims) - set(records):
            del self._claims[uid]  # unprepared by the kubelet meanwhile, or by us
        for uid, (checkpoint, revision) in records.items():
            suspect = self._claims.get(uid)
            if checkpoint.step == ClaimStep.PREPARING:
                reason: str | None = STUCK_PREPARING
                wait = self.timings.stuck_preparing
            else:
                reason, wait = self._claim_reason(checkpoint), self.timings.grace
            if reason is None:
                self._claims.pop(uid, None)
                continue
            if suspect is None or suspect.reason != reason or suspect.revision != revision:
                # Anything written to the record (a step taken) starts the wait again.
                self._claims[uid] = _Suspect(reason, now, revision)
                continue
            if now - suspect.since >= wait:
                try:
                    await self._unprepare(checkpoint, revision, reason)
                except Exception:
                    self._failed(checkpoint.claim, reason)

    async def _unprepare(self, checkpoint: Checkpoint, revision: int, reason: str) -> None:
        ref = checkpoint.claim
        if self.deps.locks.busy(ref.uid):
            return  # a kubelet call is on it right now; look again next time
        if reason != STUCK_PREPARING:
            confirmed = await self._confirm(ref, reason)
            if confirmed is None:
                return
            reason = confirmed
        found = await self.deps.checkpoints.get(subjects.checkpoint_key(self.deps.node, ref.uid))
        if found is None or found[1] != revision:
            return  # changed since the check: the next one decides afresh
        reply = await on_unprepare(
            UnprepareClaims(claims=(ref,), timeout_ms=UNPREPARE_TIMEOUT_MS), self.deps
        )
        error = reply.errors.get(ref.uid, "")
        fields = _claim_fields(ref) | {"reason": reason, "step": str(checkpoint.step)}
        if error:
            self.metrics.failed.labels(reason).inc()
            logger.warning("could not unprepare a forgotten claim", extra=fields | {"error": error})
            return
        self._claims.pop(ref.uid, None)
        self.metrics.cleaned.labels(reason).inc()
        logger.warning(
            "unprepared a claim the kubelet did not: host state undone, CDI spec removed, "
            "devices released",
            extra=fields,
        )

    async def _confirm(self, ref: ClaimRef, reason: str) -> str | None:
        """Ask the API server once more before undoing anything; None when it cannot say.

        The watched view may be behind (a watch interrupted, an outage): an unreachable API
        server is never taken for a deleted claim.
        """
        claims: ClaimReader = self.deps.claims
        try:
            claim = await claims.get_claim(ref.namespace, ref.name)
        except NotFound:
            return CLAIM_DELETED
        except KubeError as err:
            logger.info(
                "API server unreachable; a forgotten claim is left alone for now",
                extra=_claim_fields(ref) | {"reason": reason, "error": str(err)},
            )
            return None
        if claim.metadata.uid != ref.uid:
            return CLAIM_REPLACED
        if not allocated_here(claim, self.deps.driver, self.deps.node):
            return NOT_ALLOCATED_HERE
        self._claims.pop(ref.uid, None)  # it is there after all: the view was behind
        return None

    # --- ledger holds -------------------------------------------------------------------------

    async def _owners(self) -> set[str]:
        prefix = subjects.device_key_prefix(self.deps.node)
        owners: set[str] = set()
        for key in await self.ledger.keys(prefix):
            found = await self.ledger.get(key)
            if found is not None:
                owners.update(found[0].holders)
                owners.update(found[0].used)
        return owners

    async def _check_holds(self, recorded: set[str], now: float) -> None:
        # Device-plugin owners are the gateway's: it compares them with pod-resources.
        loose = {
            o
            for o in await self._owners()
            if o not in recorded and not o.startswith(dp.OWNER_PREFIX)
        }
        for owner in set(self._holds) - loose:
            del self._holds[owner]
        for owner in loose:
            suspect = self._holds.setdefault(owner, _Suspect(HOLD_WITHOUT_CHECKPOINT, now))
            if now - suspect.since >= self.timings.grace:
                try:
                    await self._release(owner)
                except Exception:
                    self._failed(ClaimRef(namespace="", name="", uid=owner), suspect.reason)

    def _failed(self, ref: ClaimRef, reason: str) -> None:
        """One orphan that could not be cleaned does not keep the others waiting."""
        self.metrics.failed.labels(reason).inc()
        logger.exception(
            "could not clean an orphan; trying again at the next check",
            extra=_claim_fields(ref) | {"reason": reason},
        )

    async def _release(self, owner: str) -> None:
        """Remove the owner's specs and release its holds, unless it got a record meanwhile."""
        key = subjects.checkpoint_key(self.deps.node, owner)
        async with self.deps.locks.hold(owner):
            if await self.deps.checkpoints.get(key) is not None:
                self._holds.pop(owner, None)  # a prepare recorded it meanwhile
                return
            # A prepare with no host action reserves and writes its specs with its one
            # record: cut short before the record lands, it leaves both behind.
            await self.deps.bus.request(
                subjects.cdi_remove(self.deps.node),
                RemoveCdiSpecs(owner=owner),
                CdiSpecsRemoved,
                UNPREPARE_TIMEOUT_MS / 1000,
            )
            released = await self.deps.bus.request(
                subjects.alloc_release(self.deps.node),
                ReleaseDevices(owner=owner),
                Released,
                UNPREPARE_TIMEOUT_MS / 1000,
            )
        self._holds.pop(owner, None)
        seen = self.cache.by_uid.get(owner)
        ref = ClaimRef(
            namespace=seen.namespace if seen else "", name=seen.name if seen else "", uid=owner
        )
        self.metrics.cleaned.labels(HOLD_WITHOUT_CHECKPOINT).inc()
        logger.warning(
            "released ledger holds of an owner with no checkpoint",
            extra=_claim_fields(ref)
            | {"reason": HOLD_WITHOUT_CHECKPOINT, "devices": list(released.devices)},
        )


def _claim_fields(ref: ClaimRef) -> dict[str, object]:
    return {
        telemetry.ATTR_CLAIM_NAMESPACE: ref.namespace,
        telemetry.ATTR_CLAIM_NAME: ref.name,
        telemetry.ATTR_CLAIM_UID: ref.uid,
    }
