"""Prepare and unprepare commands between the gateway and the preparer."""

from __future__ import annotations

import msgspec

from hostdev_events.base import Message


class ClaimRef(msgspec.Struct, frozen=True, kw_only=True):
    """A ResourceClaim as the kubelet names it."""

    namespace: str
    name: str
    uid: str


class PreparedDevice(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One device of a prepared claim as the kubelet receives it."""

    request_names: tuple[str, ...]
    pool: str
    device: str
    cdi_device_ids: tuple[str, ...] = ()
    share_id: str | None = None


class ClaimOutcome(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Result for one claim: its devices, or a non-empty error."""

    devices: tuple[PreparedDevice, ...] = ()
    error: str = ""


class PrepareClaims(Message, frozen=True, tag="claims.prepare.v1"):
    """Prepare every listed claim (one kubelet call: one pod, this driver; or several
    concurrent calls the gateway batched)."""

    claims: tuple[ClaimRef, ...]
    timeout_ms: int  # what is left of the kubelet's own deadline


class PrepareClaimsReply(Message, frozen=True, tag="claims.prepare.reply.v1"):
    """One outcome per requested claim UID."""

    outcomes: dict[str, ClaimOutcome]


class UnprepareClaims(Message, frozen=True, tag="claims.unprepare.v1"):
    """Undo everything prepare did for each listed claim."""

    claims: tuple[ClaimRef, ...]
    timeout_ms: int


class UnprepareClaimsReply(Message, frozen=True, tag="claims.unprepare.reply.v1"):
    """Claim UID to error text; an empty text means success."""

    errors: dict[str, str]
