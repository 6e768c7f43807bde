"""Device health with debouncing, and devices that vanished kept as unhealthy for a while.

A device that disappears is first reported unhealthy, so the kubelet and the
scheduler learn it; after `gone_seconds` it leaves the inventory. A change must hold
for `debounce_seconds` before it is published, so a flapping device stays quiet.

Error counters (AER) are compared with the previous scan: a rise is a fault that holds
until it has been published and then `quiet_seconds` passed without another rise, so
even a single rise outlasts the debounce. Params under `DISCOVERED` keep the value they
had when the device was first seen (first value wins, a missing one is taken when it
appears), so health checks compare the host with what discovery found.
Pure logic: the caller passes the time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from hostdev_events.inventory import Device, HealthChange
from hostdev_families import DISCOVERED, Health

GONE = "device is gone from the host"


@dataclass(slots=True)
class _Track:
    published: bool  # the health everyone has been told
    message: str
    observed: bool  # the latest observation
    observed_message: str
    since: float  # when the latest observation started to hold
    last_seen: Device
    gone_since: float | None = None
    discovered: dict[str, str] = field(default_factory=dict)  # DISCOVERED params, first values
    counters: dict[str, int] = field(default_factory=dict)  # error counters at the last scan
    fault: str = ""  # why the counters made the device unhealthy; empty when they did not
    fault_at: float = 0.0  # the latest rise
    fault_told: bool = False  # the fault has been published as unhealthy


def _pin(discovered: dict[str, str], device: Device) -> Device:
    """The device with its DISCOVERED params as first seen; new ones are recorded."""
    for key, value in device.params.items():
        if key.startswith(DISCOVERED):
            discovered.setdefault(key, value)
    if all(device.params.get(k) == v for k, v in discovered.items()):
        return device
    return msgspec.structs.replace(device, params={**device.params, **discovered})


@dataclass(slots=True)
class HealthTracker:
    """Decides, scan after scan, what health to publish for each device."""

    debounce_seconds: float
    gone_seconds: float
    quiet_seconds: float = 60.0
    tracks: dict[str, _Track] = field(default_factory=dict)

    def _observe(self, name: str, device: Device, healthy: bool, message: str, now: float) -> None:
        track = self.tracks.get(name)
        if track is None:
            # A device seen for the first time is published as it is, without delay.
            self.tracks[name] = _Track(healthy, message, healthy, message, now, device)
            return
        track.last_seen = device
        if healthy != track.observed:
            track.observed, track.since = healthy, now
        track.observed_message = message

    def _counter_fault(self, track: _Track, counters: Mapping[str, int], now: float) -> str:
        rises = [
            f"{label} rose from {track.counters[label]} to {count}"
            for label, count in counters.items()
            if label in track.counters and count > track.counters[label]
        ]
        # A counter that went down (a reset) is the new reference; one unreadable this scan
        # keeps its last value.
        track.counters.update(counters)
        if rises:
            track.fault, track.fault_at, track.fault_told = "; ".join(rises), now, False
        elif track.fault and track.fault_told and now - track.fault_at >= self.quiet_seconds:
            track.fault = ""
        return track.fault

    def _check(
        self, device: Device, check: Callable[[Device], Health], now: float
    ) -> tuple[Device, bool, str]:
        track = self.tracks.get(device.name)
        discovered = track.discovered if track is not None else {}
        device = _pin(discovered, device)
        health = check(device)
        fault = ""
        if track is not None:
            fault = self._counter_fault(track, health.counters, now)
        problems = "; ".join(p for p in (health.problem, fault) if p)
        self._observe(device.name, device, not problems, problems, now)
        track = self.tracks[device.name]
        track.discovered = discovered
        if not track.counters:
            track.counters = dict(health.counters)  # the first reading is the reference
        return device, not problems, problems

    def update(
        self, now: float, discovered: Sequence[Device], check: Callable[[Device], Health]
    ) -> tuple[list[Device], list[HealthChange]]:
        """The devices to publish (with their health) and the health changes to announce."""
        seen = set()
        for device in discovered:
            seen.add(device.name)
            self._check(device, check, now)
            self.tracks[device.name].gone_since = None
        for name, track in list(self.tracks.items()):
            if name in seen:
                continue
            if track.gone_since is None:
                track.gone_since = now
            if now - track.gone_since >= self.gone_seconds:
                del self.tracks[name]
                continue
            self._observe(name, track.last_seen, False, GONE, now)
        changes = []
        for name, track in self.tracks.items():
            settled = now - track.since >= self.debounce_seconds
            if settled and track.observed != track.published:
                track.published = track.observed
                changes.append(
                    HealthChange(
                        device=name, healthy=track.published, message=track.observed_message
                    )
                )
            if track.published == track.observed:
                track.message = track.observed_message
            if track.fault and not track.published:
                track.fault_told = True
        devices = [
            msgspec.structs.replace(
                t.last_seen, healthy=t.published, health_message="" if t.published else t.message
            )
            for _, t in sorted(self.tracks.items())
        ]
        return devices, changes
