"""The device ledger: who holds which device, kept in JetStream KV with compare-and-set."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from hostdev_bus import KeyExists, KvStore, WrongRevision
from hostdev_events import subjects
from hostdev_events.alloc import DeviceWant, Hold
from hostdev_events.base import ErrorCode
from hostdev_runtime.errors import HandlerError

_CAS_ATTEMPTS = 8

# Given the current hold, the hold to write, or None to refuse.
_Decision = Callable[[Hold], Hold | None]


class Ledger:
    """Reservations for one node, all-or-nothing per request.

    The latest (hold, revision) of each device is cached; a write that loses the
    compare-and-set (another instance wrote first) re-reads and decides again.
    """

    def __init__(self, node: str, kv: KvStore[Hold]) -> None:
        self.node = node
        self.kv = kv
        self._cache: dict[str, tuple[Hold, int]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, device: str) -> asyncio.Lock:
        return self._locks.setdefault(device, asyncio.Lock())

    async def _read(self, device: str, fresh: bool = False) -> tuple[Hold, int]:
        if not fresh and device in self._cache:
            return self._cache[device]
        found = await self.kv.get(subjects.device_key(self.node, device))
        current = found if found is not None else (Hold(), 0)
        self._cache[device] = current
        return current

    async def _write(self, device: str, hold: Hold, revision: int) -> None:
        key = subjects.device_key(self.node, device)
        if not hold.holders:
            await self.kv.delete(key, last=revision or None)
            self._cache[device] = (Hold(), 0)
        elif revision == 0:
            self._cache[device] = (hold, await self.kv.create(key, hold))
        else:
            self._cache[device] = (hold, await self.kv.update(key, hold, last=revision))

    async def _change(self, device: str, decide: _Decision) -> bool:
        """Apply `decide` to the device's hold with compare-and-set; False if refused."""
        fresh = False
        for _ in range(_CAS_ATTEMPTS):
            hold, revision = await self._read(device, fresh)
            new = decide(hold)
            if new is None:
                return False
            if new == hold:
                return True
            try:
                await self._write(device, new, revision)
                return True
            except (WrongRevision, KeyExists):
                fresh = True
        raise HandlerError(ErrorCode.STALE, f"device {device}: ledger kept changing; try again")

    async def reserve(self, owner: str, wants: Iterable[DeviceWant]) -> tuple[str, ...]:
        """Hold every wanted device for `owner` or none of them."""
        ordered = sorted(wants, key=lambda w: w.device)
        locks = [self._lock(w.device) for w in ordered]
        for lock in locks:  # sorted order: two requests never wait on each other in a cycle
            await lock.acquire()
        try:
            done: list[str] = []
            for want in ordered:
                if not await self._change(want.device, _add(owner, want)):
                    holders = (await self._read(want.device))[0].holders
                    for device in done:
                        await self._change(device, _remove(owner))
                    raise HandlerError(
                        ErrorCode.CONFLICT,
                        f"device {want.device} is held by {', '.join(holders)}",
                    )
                done.append(want.device)
            return tuple(done)
        finally:
            for lock in locks:
                lock.release()

    async def release(self, owner: str, devices: Iterable[str] | None) -> tuple[str, ...]:
        """Drop the owner from the listed devices (every device of the node when None)."""
        if devices is None:
            prefix = subjects.device_key_prefix(self.node)
            devices = [k[len(prefix) :] for k in await self.kv.keys(prefix)]
        released: list[str] = []
        for device in sorted(set(devices)):
            async with self._lock(device):
                hold, _ = await self._read(device, fresh=True)
                if owner in hold.holders and await self._change(device, _remove(owner)):
                    released.append(device)
        return tuple(released)


def _add(owner: str, want: DeviceWant) -> _Decision:
    def add(hold: Hold) -> Hold | None:
        if owner in hold.holders:
            return hold
        if hold.holders and not (hold.shareable and want.shareable):
            return None  # exclusive on either side: refused
        return Hold(holders=(*hold.holders, owner), shareable=want.shareable)

    return add


def _remove(owner: str) -> _Decision:
    def remove(hold: Hold) -> Hold | None:
        return Hold(holders=tuple(h for h in hold.holders if h != owner), shareable=hold.shareable)

    return remove
