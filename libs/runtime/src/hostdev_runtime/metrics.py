"""Prometheus metrics: one registry per service instance, the shared ones defined once."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Prepare latency is what a pod start waits for: buckets from 1 ms to 10 s.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


@dataclass(slots=True)
class Metrics:
    """The metrics every service has, on the service's own registry."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )
    handled: Counter = field(init=False)
    handle_seconds: Histogram = field(init=False)
    nats_reconnects: Counter = field(init=False)
    nats_disconnects: Counter = field(init=False)

    def __post_init__(self) -> None:
        self.handled = Counter(
            "hostdev_messages_handled",
            "NATS messages handled, by subject and outcome (ok or an error code).",
            ["subject", "outcome"],
            registry=self.registry,
        )
        self.handle_seconds = Histogram(
            "hostdev_message_handle_seconds",
            "Time to handle one NATS message, by subject.",
            ["subject"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.nats_reconnects = Counter(
            "hostdev_nats_reconnects", "Reconnections to NATS.", registry=self.registry
        )
        self.nats_disconnects = Counter(
            "hostdev_nats_disconnects", "Lost connections to NATS.", registry=self.registry
        )


class ClaimMetrics:
    """The preparer's: prepare/unprepare latency per family, errors by kind."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.prepare_seconds = Histogram(
            "hostdev_prepare_seconds",
            "Time to prepare one claim or device-plugin allocation, by device family.",
            ["family"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.unprepare_seconds = Histogram(
            "hostdev_unprepare_seconds",
            "Time to unprepare one claim or allocation, by device family.",
            ["family"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "hostdev_prepare_errors",
            "Failed prepares and unprepares, by kind of error.",
            ["operation", "kind"],
            registry=registry,
        )


class DeviceMetrics:
    """Discovery's: devices by family and health."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.devices = Gauge(
            "hostdev_devices",
            "Devices in the node's inventory, by family and health.",
            ["family", "health"],
            registry=registry,
        )


class SharedFallbackMetrics:
    """Discovery's: shared devices on an API server that drops `allowMultipleAllocations`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.active = Gauge(
            "hostdev_shared_fallback_active",
            "1 while the API server drops allowMultipleAllocations (DRAConsumableCapacity off) "
            "and shared devices are published as numbered copies.",
            registry=registry,
        )
        self.exclusive = Gauge(
            "hostdev_shared_devices_exclusive",
            "Shared devices the scheduler can give to one claim only: the API server drops "
            "allowMultipleAllocations and no copies could be published for them.",
            registry=registry,
        )
        self.probes = Counter(
            "hostdev_shared_probes",
            "Dry-run checks whether the API server keeps allowMultipleAllocations, by result "
            "(kept, dropped, error).",
            ["result"],
            registry=registry,
        )
