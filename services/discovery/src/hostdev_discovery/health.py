"""Device health with debouncing, and devices that vanished kept as unhealthy for a while.

A device that disappears is first reported unhealthy, so the kubelet and the
scheduler learn it; after `gone_seconds` it leaves the inventory. A change must hold
for `debounce_seconds` before it is published, so a flapping device stays quiet.
Pure logic: the caller passes the time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from hostdev_events.inventory import Device, HealthChange

GONE = "device is gone from the host"
CHECK_FAILED = "health check failed"


@dataclass(slots=True)
class _Track:
    published: bool  # the health everyone has been told
    message: str
    observed: bool  # the latest observation
    observed_message: str
    since: float  # when the latest observation started to hold
    last_seen: Device
    gone_since: float | None = None


@dataclass(slots=True)
class HealthTracker:
    """Decides, scan after scan, what health to publish for each device."""

    debounce_seconds: float
    gone_seconds: float
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

    def update(
        self, now: float, discovered: Sequence[Device], check: Callable[[Device], tuple[bool, str]]
    ) -> tuple[list[Device], list[HealthChange]]:
        """The devices to publish (with their health) and the health changes to announce."""
        seen = set()
        for device in discovered:
            seen.add(device.name)
            healthy, message = check(device)
            self._observe(device.name, device, healthy, message, now)
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
        devices = [
            msgspec.structs.replace(
                t.last_seen, healthy=t.published, health_message="" if t.published else t.message
            )
            for _, t in sorted(self.tracks.items())
        ]
        return devices, changes
