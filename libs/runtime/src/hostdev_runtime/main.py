"""The body of every service's __main__: settings, logging, tracing, run."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Mapping

from hostdev_runtime.errors import SettingsError
from hostdev_runtime.logs import setup_logging
from hostdev_runtime.runner import App, run_service
from hostdev_runtime.settings import CommonSettings, S, load_settings
from hostdev_runtime.telemetry import setup_tracing, shutdown_tracing

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: str, service: str) -> LoopFactory | None:
    """The event loop to run on: uvloop's when asked for and importable, else asyncio's
    own (None)."""
    if choice != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        logging.getLogger(service).warning(
            "uvloop cannot be imported; running on asyncio's own event loop"
        )
        return None
    return uvloop.new_event_loop


def main(service: str, kind: type[S], app: Callable[[S], App]) -> None:
    """Load `kind` from the environment and run `app(settings)` as `service`; exit 2 on bad settings."""
    env: Mapping[str, str] = os.environ
    try:
        settings = load_settings(kind, env)
    except SettingsError as err:
        print(f"{service}: {err}", file=sys.stderr)
        raise SystemExit(2) from err
    setup_logging(service, settings.log_level)
    setup_tracing(service, env)
    try:
        with asyncio.Runner(loop_factory=loop_factory(settings.event_loop, service)) as runner:
            runner.run(run_service(service, settings, app(settings)))
    except Exception as err:
        # Settings were fine but start-up failed (unreadable device config, API refused):
        # say why in one line and exit non-zero so the pod restarts with backoff.
        logging.getLogger(service).exception("service failed", extra={"error": str(err)})
        raise SystemExit(1) from err
    finally:
        shutdown_tracing()


__all__ = ["CommonSettings", "loop_factory", "main"]
