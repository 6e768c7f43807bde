"""The device ledger: who holds which device, group and counter, in JetStream KV with compare-and-set."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import Gauge

from hostdev_bus import KeyExists, KvStore, WrongRevision
from hostdev_events import subjects
from hostdev_events.alloc import (
    COUNTER_ENTRY_PREFIX,
    DeviceWant,
    Hold,
    counter_entry,
    is_device_entry,
    owns_key,
    share_key,
)
from hostdev_events.base import ErrorCode
from hostdev_runtime.errors import HandlerError

_CAS_ATTEMPTS = 8

# Given the current hold, the hold to write, or None to refuse.
_Decision = Callable[[Hold], Hold | None]


@dataclass(frozen=True, slots=True)
class _Step:
    """One ledger entry to change for a reservation, and why it might be refused."""

    entry: str
    decide: _Decision
    refusal: Callable[[Hold], str]


class Ledger:
    """Reservations for one node, all-or-nothing per request.

    The latest (hold, revision) of each entry is cached; a write that loses the
    compare-and-set (another instance wrote first) re-reads and decides again.
    """

    def __init__(self, node: str, kv: KvStore[Hold], held: Gauge | None = None) -> None:
        self.node = node
        self.kv = kv
        self.held = held  # devices held by someone, as this instance has seen them change
        self._cache: dict[str, tuple[Hold, int]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, entry: str) -> asyncio.Lock:
        return self._locks.setdefault(entry, asyncio.Lock())

    async def _read(self, entry: str, fresh: bool = False) -> tuple[Hold, int]:
        if not fresh and entry in self._cache:
            return self._cache[entry]
        found = await self.kv.get(subjects.device_key(self.node, entry))
        current = found if found is not None else (Hold(), 0)
        self._cache[entry] = current
        return current

    async def _write(self, entry: str, hold: Hold, revision: int) -> None:
        # A released entry is written empty, never deleted: creating a key over its delete
        # marker costs JetStream three round trips, an update of a live key one.
        key = subjects.device_key(self.node, entry)
        before = self._cache.get(entry, (Hold(), 0))[0]
        if revision == 0:
            self._cache[entry] = (hold, await self.kv.create(key, hold))
        else:
            self._cache[entry] = (hold, await self.kv.update(key, hold, last=revision))
        if self.held is not None and is_device_entry(entry):
            self.held.inc(bool(hold.holders) - bool(before.holders))

    async def _change(self, entry: str, decide: _Decision) -> bool:
        """Apply `decide` with compare-and-set; False if it refused."""
        fresh = False
        for _ in range(_CAS_ATTEMPTS):
            hold, revision = await self._read(entry, fresh)
            new = decide(hold)
            if new is None:
                return False
            if new == hold:
                return True
            try:
                await self._write(entry, new, revision)
                return True
            except (WrongRevision, KeyExists):
                fresh = True
        raise HandlerError(ErrorCode.STALE, f"{entry}: ledger kept changing; try again")

    async def reserve(self, owner: str, wants: Iterable[DeviceWant]) -> tuple[str, ...]:
        """Hold every wanted device (with its group and counters) for `owner`, or nothing."""
        wants = list(wants)
        steps = _steps(owner, wants)
        locks = [self._lock(s.entry) for s in steps]
        for lock in locks:  # sorted entries: two requests never wait on each other in a cycle
            await lock.acquire()
        try:
            done: list[str] = []
            for step in steps:
                if not await self._change(step.entry, step.decide):
                    reason = step.refusal((await self._read(step.entry))[0])
                    for entry in done:
                        await self._change(entry, _remove(owner))
                    raise HandlerError(ErrorCode.CONFLICT, reason)
                done.append(step.entry)
            return tuple(sorted({w.device for w in wants}))
        finally:
            for lock in locks:
                lock.release()

    async def release(self, owner: str, entries: Iterable[str] | None) -> tuple[str, ...]:
        """Drop the owner from the listed entries (every entry of the node when None)."""
        if entries is None:
            prefix = subjects.device_key_prefix(self.node)
            entries = [k[len(prefix) :] for k in await self.kv.keys(prefix)]
        released: list[str] = []
        for entry in sorted(set(entries)):
            async with self._lock(entry):
                # The cache is enough here: if another instance wrote since, the
                # compare-and-set in _change fails and it reads again.
                hold, _ = await self._read(entry)
                if owner not in hold.holders:  # not in our copy: make sure before skipping
                    hold, _ = await self._read(entry, fresh=True)
                if owner in hold.holders and await self._change(entry, _remove(owner)):
                    released.append(entry)
        return tuple(released)


def _steps(owner: str, wants: Sequence[DeviceWant]) -> list[_Step]:
    steps: dict[str, _Step] = {}
    usage: dict[str, dict[str, int]] = {}
    capacity: dict[str, dict[str, int]] = {}
    shares: dict[str, dict[str, dict[str, int]]] = {}  # device -> share key -> amounts
    totals: dict[str, dict[str, int]] = {}
    for want in wants:
        if want.capacity:
            shares.setdefault(want.device, {})[share_key(owner, want.share_id)] = {
                name: want.consumed.get(name, 0) for name in want.capacity
            }
            totals[want.device] = want.capacity
        else:
            steps[want.device] = _Step(
                want.device, _add(owner, want.shareable), _held_by(f"device {want.device}")
            )
        for extra in want.also_holds:
            steps.setdefault(extra, _Step(extra, _add(owner, False), _held_by(extra)))
        for use in want.consumes:
            entry = counter_entry(use.counter_set)
            usage.setdefault(entry, {})
            usage[entry][use.counter] = usage[entry].get(use.counter, 0) + use.value
            capacity.setdefault(entry, {})[use.counter] = use.capacity
    for device, taken in shares.items():
        steps[device] = _Step(
            device,
            _share(owner, taken, totals[device]),
            _full(device, taken, totals[device]),
        )
    for entry, amounts in usage.items():
        steps[entry] = _Step(
            entry,
            _consume(owner, amounts, capacity[entry]),
            _exhausted(entry[len(COUNTER_ENTRY_PREFIX) :], amounts, capacity[entry]),
        )
    return [steps[e] for e in sorted(steps)]


def _add(owner: str, shareable: bool) -> _Decision:
    def add(hold: Hold) -> Hold | None:
        if owner in hold.holders:
            return hold
        if hold.holders and not (hold.shareable and shareable):
            return None  # exclusive on either side: refused
        return Hold(holders=(*hold.holders, owner), shareable=shareable)

    return add


def _in_use(hold: Hold, name: str) -> int:
    return sum(u.get(name, 0) for u in hold.used.values())


def _share(owner: str, taken: dict[str, dict[str, int]], total: dict[str, int]) -> _Decision:
    """Shares of a device with consumable capacity: refused when the sum would exceed it."""

    def share(hold: Hold) -> Hold | None:
        if owner in hold.holders:
            return hold
        if hold.holders and not hold.shareable:
            return None  # held exclusively (a record from before it had capacity)
        for name, value in total.items():
            if _in_use(hold, name) + sum(t.get(name, 0) for t in taken.values()) > value:
                return None
        return Hold(holders=(*hold.holders, owner), shareable=True, used={**hold.used, **taken})

    return share


def _full(
    device: str, taken: dict[str, dict[str, int]], total: dict[str, int]
) -> Callable[[Hold], str]:
    def explain(hold: Hold) -> str:
        if hold.holders and not hold.shareable:
            return f"device {device} is held by {', '.join(hold.holders)}"
        parts = [
            f"{name}: {_in_use(hold, name)} of {value} in use by {len(hold.holders)} holders, "
            f"{sum(t.get(name, 0) for t in taken.values())} more asked"
            for name, value in sorted(total.items())
        ]
        return f"device {device} has no capacity left ({'; '.join(parts)})"

    return explain


def _consume(owner: str, amounts: dict[str, int], capacity: dict[str, int]) -> _Decision:
    def consume(hold: Hold) -> Hold | None:
        if owner in hold.holders:
            return hold
        for counter, amount in amounts.items():
            used = sum(u.get(counter, 0) for u in hold.used.values())
            if used + amount > capacity[counter]:
                return None
        return Hold(
            holders=(*hold.holders, owner), shareable=True, used={**hold.used, owner: amounts}
        )

    return consume


def _remove(owner: str) -> _Decision:
    def remove(hold: Hold) -> Hold | None:
        return Hold(
            holders=tuple(h for h in hold.holders if h != owner),
            shareable=hold.shareable,
            used={o: u for o, u in hold.used.items() if not owns_key(owner, o)},
        )

    return remove


def _held_by(what: str) -> Callable[[Hold], str]:
    return lambda hold: f"{what} is held by {', '.join(hold.holders)}"


def _exhausted(
    counter_set: str, amounts: dict[str, int], capacity: dict[str, int]
) -> Callable[[Hold], str]:
    def explain(hold: Hold) -> str:
        parts = []
        for counter, amount in amounts.items():
            used = sum(u.get(counter, 0) for u in hold.used.values())
            parts.append(f"{counter}: {used} of {capacity[counter]} used, {amount} more asked")
        return f"counter set {counter_set} is exhausted ({'; '.join(parts)})"

    return explain
