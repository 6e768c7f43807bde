"""Feature gates that can be turned off, and the fields the real server drops when they are.

kube-apiserver's strategies clear the fields of a disabled feature on every create and
update ("disabled-field stripping"), unless the object being updated already uses the
feature: then they are kept, so turning a gate off never destroys stored data. The
answer to the write is the stripped object, which is how a client can notice.

Only the gates a test needs to turn off are modelled; every other field is kept. Gates
that are alpha (off) in 1.36 are dropped unconditionally by `strategies`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from hostdev_testing.apiserver.resources import Obj

# KEP-5075, beta and on by default since 1.36.
CONSUMABLE_CAPACITY = "DRAConsumableCapacity"
# KEP-5004, beta and on by default since 1.36: DeviceClass.spec.extendedResourceName.
EXTENDED_RESOURCE = "DRAExtendedResource"
KNOWN = frozenset({CONSUMABLE_CAPACITY, EXTENDED_RESOURCE})


class UnknownFeatureGate(ValueError):
    """A gate this emulator does not model (kube-apiserver refuses unknown gates too)."""


def parse(text: str) -> dict[str, bool]:
    """`A=false,B=true` as kube-apiserver's --feature-gates takes it."""
    gates: dict[str, bool] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or value.lower() not in ("true", "false"):
            raise UnknownFeatureGate(f"invalid feature gate {item!r}: want Name=true|false")
        gates[name.strip()] = value.lower() == "true"
    return gates


@dataclass(slots=True)
class FeatureGates:
    """Which modelled gates are off; change `disabled` to emulate a restart with new flags."""

    disabled: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, gates: Mapping[str, bool] | None) -> FeatureGates:
        unknown = set(gates or {}) - KNOWN
        if unknown:
            raise UnknownFeatureGate(f"unknown feature gates: {', '.join(sorted(unknown))}")
        return cls({name for name, on in (gates or {}).items() if not on})

    def set(self, name: str, enabled: bool) -> None:
        """Turn a modelled gate on or off."""
        if name not in KNOWN:
            raise UnknownFeatureGate(f"unknown feature gate: {name}")
        if enabled:
            self.disabled.discard(name)
        else:
            self.disabled.add(name)

    def enabled(self, name: str) -> bool:
        return name not in self.disabled

    def drop_disabled(self, plural: str, new: Obj, old: Obj | None, *, status: bool) -> None:
        """Clear in `new` what a disabled gate guards, as the resource's strategy does."""
        kept = "extendedResourceName" in ((old or {}).get("spec") or {})
        if plural == "deviceclasses" and not self.enabled(EXTENDED_RESOURCE) and not kept:
            (new.get("spec") or {}).pop("extendedResourceName", None)
        if self.enabled(CONSUMABLE_CAPACITY):
            return
        if plural == "resourceslices" and not status:
            _drop_slice_capacity(new.get("spec") or {}, (old or {}).get("spec") or {})
        elif plural == "resourceclaims" and status:
            _drop_claim_status_capacity(new.get("status") or {}, (old or {}).get("status") or {})
        elif plural == "resourceclaims":
            _drop_request_capacity(new.get("spec") or {}, (old or {}).get("spec") or {})
        elif plural == "resourceclaimtemplates" and old is None:
            # Templates are immutable: only a create can bring the fields in.
            _drop_request_capacity((new.get("spec") or {}).get("spec") or {}, {})


def _slice_devices(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [d for d in spec.get("devices") or () if isinstance(d, dict)]


def _policies(device: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for capacity in (device.get("capacity") or {}).values():
        if isinstance(capacity, dict):
            yield capacity


def _slice_uses_capacity(spec: Mapping[str, Any]) -> bool:
    return any(
        "allowMultipleAllocations" in d or any("requestPolicy" in c for c in _policies(d))
        for d in _slice_devices(spec)
    )


def _drop_slice_capacity(spec: dict[str, Any], old: Mapping[str, Any]) -> None:
    if _slice_uses_capacity(old):
        return
    for device in _slice_devices(spec):
        device.pop("allowMultipleAllocations", None)
        for capacity in _policies(device):
            capacity.pop("requestPolicy", None)


def _requests(spec: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    for request in (spec.get("devices") or {}).get("requests") or ():
        if not isinstance(request, dict):
            continue
        if isinstance(request.get("exactly"), dict):
            yield request["exactly"]
        yield from (s for s in request.get("firstAvailable") or () if isinstance(s, dict))


def _constraints(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = (spec.get("devices") or {}).get("constraints") or ()
    return [c for c in found if isinstance(c, dict)]


def _drop_request_capacity(spec: dict[str, Any], old: Mapping[str, Any]) -> None:
    in_use = any("capacity" in r for r in _requests(old)) or any(
        "distinctAttribute" in c for c in _constraints(old)
    )
    if in_use:
        return
    for request in _requests(spec):
        request.pop("capacity", None)
    for constraint in _constraints(spec):
        constraint.pop("distinctAttribute", None)


def _status_entries(status: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    allocation = status.get("allocation") or {}
    results = (allocation.get("devices") or {}).get("results") or ()
    devices = status.get("devices") or ()
    return (
        [r for r in results if isinstance(r, dict)],
        [d for d in devices if isinstance(d, dict)],
    )


def _drop_claim_status_capacity(status: dict[str, Any], old: Mapping[str, Any]) -> None:
    old_results, old_devices = _status_entries(old)
    if any("shareID" in r or "consumedCapacity" in r for r in old_results) or any(
        "shareID" in d for d in old_devices
    ):
        return
    results, devices = _status_entries(status)
    for result in results:
        result.pop("shareID", None)
        result.pop("consumedCapacity", None)
    for device in devices:
        device.pop("shareID", None)
