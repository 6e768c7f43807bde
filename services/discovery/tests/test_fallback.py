"""Copies of shared devices: names, what cannot be copied, and what the preparer resolves."""

from __future__ import annotations

import asyncio
import logging

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from hostdev_discovery.fallback import SharedFallback
from hostdev_events.copies import copied_device, copies_fit, copy_name, lookup
from hostdev_events.inventory import Device
from hostdev_kube import SliceObject
from hostdev_runtime.metrics import SharedFallbackMetrics


def _fallback(copies: int) -> tuple[SharedFallback, CollectorRegistry, asyncio.Event]:
    registry = CollectorRegistry()
    changed = asyncio.Event()
    return SharedFallback(copies, SharedFallbackMetrics(registry), changed), registry, changed


def _active(copies: int) -> tuple[SharedFallback, CollectorRegistry]:
    fallback, registry, _ = _fallback(copies)
    sent = {"spec": {"devices": [{"name": "kvm", "allowMultipleAllocations": True}]}}
    fallback.observe(sent, _stored([{"name": "kvm"}]))
    return fallback, registry


def _stored(devices: list[dict[str, object]]) -> SliceObject:
    return msgspec.convert({"metadata": {"name": "s"}, "spec": {"devices": devices}}, SliceObject)


def test_copy_names_are_the_device_name_and_an_index_and_map_back() -> None:
    """`kvm-3` comes from `kvm`; only a trailing decimal index without leading zeros counts."""
    assert copy_name("kvm", 3) == "kvm-3"
    assert copied_device("kvm-3") == "kvm"
    assert copied_device("vhost-net-12") == "vhost-net"
    assert copied_device("kvm-03") is None
    assert copied_device("kvm") is None
    assert copied_device("-3") is None


def test_copies_fit_only_while_the_longest_name_is_a_dns_label() -> None:
    """A 61-character name has room for `-9` but not for `-15`."""
    name = "d" * 61
    assert copies_fit(name, 10)
    assert not copies_fit(name, 16)


def test_lookup_resolves_a_copy_only_to_a_shared_device() -> None:
    """An exclusive device never answers for copy names; an exact name always wins."""
    kvm = Device(name="kvm", family="hostpath", shareable=True)
    card = Device(name="card", family="hostpath")
    card0 = Device(name="card-0", family="hostpath")
    devices = {d.name: d for d in (kvm, card, card0)}
    assert lookup(devices, "kvm-7") is kvm
    assert lookup(devices, "card-1") is None
    assert lookup(devices, "card-0") is card0


def test_a_dropped_field_in_a_write_answer_turns_the_copies_on_once() -> None:
    """The first answer without the field activates the fallback and asks for a republish."""
    fallback, registry, changed = _fallback(2)
    sent = {"spec": {"devices": [{"name": "kvm", "allowMultipleAllocations": True}]}}
    fallback.observe(sent, _stored([{"name": "kvm", "allowMultipleAllocations": True}]))
    assert not fallback.active
    assert not changed.is_set()
    fallback.observe(sent, _stored([{"name": "kvm"}]))
    assert fallback.active
    assert changed.is_set()
    assert registry.get_sample_value("hostdev_shared_fallback_active") == 1.0


def test_expansion_replaces_shared_devices_by_exclusive_copies() -> None:
    """Exclusive devices pass through; shared ones become `copies` exclusive devices."""
    fallback, registry = _active(3)
    kvm = Device(name="kvm", family="hostpath", shareable=True)
    udmabuf = Device(name="udmabuf", family="hostpath")
    published = fallback.expand([kvm, udmabuf])
    assert [(d.name, d.shareable) for d in published] == [
        ("kvm-0", False),
        ("kvm-1", False),
        ("kvm-2", False),
        ("udmabuf", False),
    ]
    assert registry.get_sample_value("hostdev_shared_devices_exclusive") == 0.0


def test_devices_that_cannot_be_copied_are_reported_at_error_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A too long name and a name clash leave the device exclusive, said once and counted."""
    caplog.set_level(logging.ERROR, logger="hostdev_discovery.fallback")
    fallback, registry = _active(16)
    long = Device(name="d" * 61, family="hostpath", shareable=True)
    tun = Device(name="tun", family="hostpath", shareable=True)
    clash = Device(name="tun-4", family="hostpath")
    for _ in range(3):
        published = fallback.expand([long, tun, clash])
    assert {d.name for d in published} == {"d" * 61, "tun", "tun-4"}
    assert not any(d.shareable for d in published)
    (record,) = caplog.records
    assert record.__dict__["devices"] == {
        "d" * 61: f"copy name '{'d' * 61}-15' is longer than 63 characters",
        "tun": "copy name 'tun-4' is another device's name",
    }
    assert registry.get_sample_value("hostdev_shared_devices_exclusive") == 2.0
