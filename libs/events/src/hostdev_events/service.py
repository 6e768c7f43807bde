"""Lifecycle events of service processes."""

from __future__ import annotations

from hostdev_events.base import Message


class ServiceReady(Message, frozen=True, tag="service.ready.v1"):
    """A service instance subscribed to all its subjects and serves."""

    service: str
    instance: str
    node: str
