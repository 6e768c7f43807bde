"""`hostdev slices`: the ResourceSlices discovery would publish for this host's devices."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

from hostdev_cli.errors import InputError
from hostdev_events import subjects
from hostdev_events.inventory import Device
from hostdev_families.slices import Pool, plan

DEFAULT_DRIVER = "hostdev.k8s.io"


def node_name(given: str | None) -> str:
    """--node, else $NODE_NAME (as the services read it), else this machine's host name."""
    name = given or os.environ.get("NODE_NAME") or socket.gethostname().lower()
    try:
        subjects.node_token(name)  # the services refuse the same names
    except subjects.InvalidName as err:
        raise InputError(
            f"{name!r} is not a valid Kubernetes node name; give one with --node"
        ) from err
    return name


def driver_name(given: str | None) -> str:
    """--driver, else $HOSTDEV_DRIVER_NAME, else the project's default driver name."""
    return given or os.environ.get("HOSTDEV_DRIVER_NAME") or DEFAULT_DRIVER


def build_slices(
    devices: Sequence[Device], node: str, driver: str, taint_effect: str | None = None
) -> list[dict[str, Any]]:
    """The slice bodies a first publication creates, by the publisher's own planner."""
    return plan(Pool(node=node, driver=driver), [], devices, taint_effect).creates
