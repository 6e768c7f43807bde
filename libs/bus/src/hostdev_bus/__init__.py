"""NATS for dra-driver-hostdev: connect, typed request/reply, KV with compare-and-set, tracing."""

from hostdev_bus.client import Bus, NatsBus, connect, decode_reply, inbox_prefix
from hostdev_bus.coalesce import CoalesceLimits, CoalescingBus
from hostdev_bus.errors import (
    BusError,
    KeyExists,
    KeyMissing,
    KvError,
    MalformedReply,
    PayloadTooLarge,
    RemoteError,
    RequestTimeout,
    Unavailable,
    WrongRevision,
)
from hostdev_bus.kv import KvStore, KvWrite, MemoryKv, NatsKv, write_all
from hostdev_bus.kvmemory import PrefixInMemory

__all__ = [
    "Bus",
    "BusError",
    "CoalesceLimits",
    "CoalescingBus",
    "KeyExists",
    "KeyMissing",
    "KvError",
    "KvStore",
    "KvWrite",
    "MalformedReply",
    "MemoryKv",
    "NatsBus",
    "NatsKv",
    "PayloadTooLarge",
    "PrefixInMemory",
    "RemoteError",
    "RequestTimeout",
    "Unavailable",
    "WrongRevision",
    "connect",
    "decode_reply",
    "inbox_prefix",
    "write_all",
]
