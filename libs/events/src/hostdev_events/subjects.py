"""The one place that names NATS subjects, KV buckets and KV keys.

Node names may contain dots, which NATS reads as token separators, so every node
name is encoded with `node_token` (`.` becomes `_`, reversible because `_` is not
legal in a Kubernetes node name).
"""

from __future__ import annotations

import re

PREFIX = "hostdev.v1"

INVENTORY_BUCKET = "hostdev-inventory"
LEDGER_BUCKET = "hostdev-ledger"
CHECKPOINT_BUCKET = "hostdev-checkpoints"

QUEUE_GROUP_SUFFIX = "workers"

_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_KV_KEY_PART = re.compile(r"^[-_=a-zA-Z0-9]+$")
# A KV key travels in the subject of every read and write, and nats-server closes the
# connection of a client whose protocol line is longer than 4096 bytes (max_control_line):
# with the bucket, the node token (253 at most) and the reply subject this leaves room.
MAX_KEY_PART = 1024


class InvalidName(ValueError):
    """A node name, claim UID or device name that cannot become a subject or key."""


def node_token(node: str) -> str:
    """Encode a Kubernetes node name as one NATS subject token."""
    if len(node) > 253 or not _NODE_NAME.match(node):
        raise InvalidName(f"not a valid node name: {node!r}")
    return node.replace(".", "_")


def node_from_token(token: str) -> str:
    """Decode `node_token`."""
    return token.replace("_", ".")


def _node_subject(node: str, suffix: str) -> str:
    return f"{PREFIX}.{node_token(node)}.{suffix}"


def claims_prepare(node: str) -> str:
    """Command: prepare a pod's claims on `node` (gateway -> preparer)."""
    return _node_subject(node, "claims.prepare")


def claims_unprepare(node: str) -> str:
    """Command: unprepare claims on `node` (gateway -> preparer)."""
    return _node_subject(node, "claims.unprepare")


def alloc_reserve(node: str) -> str:
    """Command: reserve devices of `node` for an owner (preparer -> allocator)."""
    return _node_subject(node, "alloc.reserve")


def alloc_release(node: str) -> str:
    """Command: release everything an owner holds on `node` (preparer -> allocator)."""
    return _node_subject(node, "alloc.release")


def cdi_write(node: str) -> str:
    """Command: write a claim's CDI spec files on `node` (preparer -> cdi-writer)."""
    return _node_subject(node, "cdi.write")


def cdi_remove(node: str) -> str:
    """Command: remove a claim's CDI spec files on `node` (preparer -> cdi-writer)."""
    return _node_subject(node, "cdi.remove")


def inventory_changed(node: str) -> str:
    """Event: the device inventory of `node` changed (discovery -> anyone)."""
    return _node_subject(node, "inventory.changed")


def inventory_get(node: str) -> str:
    """Command: ask discovery for the current inventory of `node`."""
    return _node_subject(node, "inventory.get")


def health_changed(node: str) -> str:
    """Event: the health of devices of `node` changed (discovery -> gateway)."""
    return _node_subject(node, "health.changed")


def queue_group(service: str) -> str:
    """Queue group name shared by every instance of one service."""
    return f"{service}-{QUEUE_GROUP_SUFFIX}"


def _key_part(value: str, what: str) -> str:
    if len(value) > MAX_KEY_PART:
        raise InvalidName(
            f"not usable in a KV key ({what}): {len(value)} characters, "
            f"more than {MAX_KEY_PART}: {value[:40]!r}..."
        )
    if not _KV_KEY_PART.match(value):
        raise InvalidName(f"not usable in a KV key ({what}): {value!r}")
    return value


def device_key(node: str, device: str) -> str:
    """KV key of one device of `node` (inventory and ledger buckets)."""
    return f"{node_token(node)}.{_key_part(device, 'device name')}"


def device_key_prefix(node: str) -> str:
    """Prefix of every device key of `node`, for watching or listing one node."""
    return f"{node_token(node)}."


def checkpoint_key(node: str, claim_uid: str) -> str:
    """KV key of one claim's checkpoint on `node`."""
    return f"{node_token(node)}.{_key_part(claim_uid, 'claim uid')}"


def service_ready(node: str) -> str:
    """Event: a service instance on `node` finished starting and is serving."""
    return _node_subject(node, "service.ready")


def dp_allocate(node: str) -> str:
    """Command: prepare devices for a device-plugin Allocate (gateway -> preparer)."""
    return _node_subject(node, "dp.allocate")


def dp_release(node: str) -> str:
    """Command: undo device-plugin allocations no pod uses (gateway -> preparer)."""
    return _node_subject(node, "dp.release")


def dp_list(node: str) -> str:
    """Command: list prepared device-plugin IDs of a resource (gateway -> preparer)."""
    return _node_subject(node, "dp.list")


def dp_restore(node: str) -> str:
    """Command: rebuild device-plugin allocations pods still hold (gateway -> preparer)."""
    return _node_subject(node, "dp.restore")


def alloc_prefer(node: str) -> str:
    """Command: choose device-plugin IDs with locality in mind (gateway -> allocator)."""
    return _node_subject(node, "alloc.prefer")


def dp_reconcile(node: str) -> str:
    """Command: reconcile device-plugin allocations with pod-resources now (anyone -> gateway)."""
    return _node_subject(node, "dp.reconcile")
