"""Deferred imports, each in a fresh interpreter (this one has imported everything already)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def _run(code: str) -> str:
    """Run `code` in a new interpreter; its stdout, or the failure with its stderr."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_deferred_module_loads_on_first_use_and_then_is_the_module_itself() -> None:
    out = _run(
        """
        import sys
        from hostdev_runtime import deferred
        deferred.defer("aiohttp")
        import aiohttp
        import aiohttp as again
        print("aiohttp.client" in sys.modules, again is aiohttp)
        session_type = aiohttp.ClientSession
        from aiohttp import web
        import aiohttp.web_response
        real = sys.modules["aiohttp"]
        print(
            "aiohttp.client" in sys.modules,
            type(real).__name__,
            session_type is real.ClientSession,
            web is real.web,
            aiohttp.web_response is real.web_response,
        )
        """
    )
    assert out.splitlines() == ["False True", "True module True True True"]


def test_nats_imports_without_loading_its_websocket_libraries_once_deferred() -> None:
    out = _run(
        """
        import sys
        from hostdev_runtime import deferred
        deferred.defer(*deferred.NATS_WEBSOCKET)
        import nats.aio.client
        print(sorted(m for m in sys.modules if m.startswith(("aiohttp.", "multidict."))))
        """
    )
    assert out == "[]"


@pytest.mark.parametrize("service", ["hostdev_gateway", "hostdev_allocator", "hostdev_cdi_writer"])
def test_services_without_an_api_client_never_load_aiohttp_to_start(service: str) -> None:
    """Their entry point and app, as `python -m` imports them, leave aiohttp unloaded."""
    out = _run(
        f"""
        import sys
        import {service}.__main__, {service}.app
        print(sorted(m for m in sys.modules if m.startswith("aiohttp.")))
        """
    )
    assert out == "[]"


def test_a_module_that_is_not_installed_still_fails_to_import() -> None:
    out = _run(
        """
        from hostdev_runtime import deferred
        deferred.defer("hostdev_no_such_module")
        try:
            import hostdev_no_such_module
        except ImportError:
            print("ImportError")
        """
    )
    assert out == "ImportError"
