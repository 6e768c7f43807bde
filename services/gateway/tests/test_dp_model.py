"""Which device-plugin IDs a resource offers for shared devices."""

from __future__ import annotations

from hostdev_events.inventory import ConsumableCapacity, Device
from hostdev_families import ResourceSpec
from hostdev_gateway.dp_model import offered


def _device(consumable: dict[str, ConsumableCapacity] | None = None) -> Device:
    return Device(name="udmabuf", family="hostpath", shareable=True, consumable=consumable or {})


def test_shares_of_an_unlimited_shared_device_are_all_offered() -> None:
    """`shares: 1000` on a device without slots offers 1,000 IDs."""
    spec = ResourceSpec(name="intel.com/udma", devices=("udmabuf",), shares=1000)
    assert len(offered(spec, {"udmabuf": _device()}, {})) == 1000


def test_shares_stop_at_the_slots_of_the_device() -> None:
    """`shares: 110` on a device with `slots: 4` offers 4 IDs: each allocated ID takes a
    slot, so a fifth could only fail at Allocate."""
    spec = ResourceSpec(name="hostdev.k8s.io/udma", devices=("udmabuf",), shares=110)
    device = _device(consumable={"slots": ConsumableCapacity(value=4)})
    assert [o.id for o in offered(spec, {"udmabuf": device}, {})] == [
        f"udmabuf-s{i}" for i in range(4)
    ]
