"""Wiring: the DRA socket first, then the registration socket the kubelet watches."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hostdev_gateway import dra, registration
from hostdev_gateway.claims import ClaimCalls
from hostdev_gateway.settings import Settings
from hostdev_gateway.sockets import serve_unix, stop_unix
from hostdev_runtime.runner import App, Route, ServiceContext

SERVICE = "gateway"


def socket_paths(settings: Settings) -> tuple[Path, Path]:
    """(DRA service socket, registration socket), per-instance when a pod UID is set."""
    driver = settings.driver_name
    suffix = f"-{settings.pod_uid}" if settings.pod_uid else ""
    service = Path(settings.plugins_dir) / driver / f"dra{suffix}.sock"
    reg = Path(settings.registry_dir) / f"{driver}{suffix}-reg.sock"
    return service, reg


def app(settings: Settings) -> App:
    """The gateway app for the runner: it answers no NATS subjects, only the kubelet."""

    async def start(ctx: ServiceContext) -> Sequence[Route[Any]]:
        service_path, reg_path = socket_paths(settings)
        calls = ClaimCalls(node=settings.node_name, bus=ctx.bus)
        dra_server = dra.server(calls)
        await serve_unix(dra_server, service_path)
        ctx.stack.push_async_callback(stop_unix, dra_server, service_path)
        # Only now may the kubelet learn about us: it calls the endpoint right after registering.
        servicer = registration.Registration(
            registration.DRA_PLUGIN_TYPE,
            settings.driver_name,
            str(service_path),
            registration.DRA_VERSIONS,
        )
        reg_server = registration.server(servicer)
        await serve_unix(reg_server, reg_path)
        ctx.stack.push_async_callback(stop_unix, reg_server, reg_path)
        return ()

    return start
