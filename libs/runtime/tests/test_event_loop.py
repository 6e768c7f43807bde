"""The event loop a service runs on: asyncio's own by default, uvloop when asked and importable."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest
import uvloop

from hostdev_runtime.errors import SettingsError
from hostdev_runtime.main import loop_factory
from hostdev_runtime.settings import CommonSettings, load_settings


def test_services_run_on_the_standard_loop_unless_told_to_use_uvloop() -> None:
    assert load_settings(CommonSettings, {"NODE_NAME": "n"}).event_loop == "asyncio"
    chosen = load_settings(CommonSettings, {"NODE_NAME": "n", "HOSTDEV_EVENT_LOOP": "uvloop"})
    assert chosen.event_loop == "uvloop"


def test_an_unknown_event_loop_is_a_settings_error_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="HOSTDEV_EVENT_LOOP"):
        load_settings(CommonSettings, {"NODE_NAME": "n", "HOSTDEV_EVENT_LOOP": "trio"})


def test_uvloop_factory_runs_coroutines_on_a_uvloop_loop() -> None:
    factory = loop_factory("uvloop", "svc")
    assert factory is not None

    async def running_loop() -> asyncio.AbstractEventLoop:
        await asyncio.sleep(0)
        return asyncio.get_running_loop()

    with asyncio.Runner(loop_factory=factory) as runner:
        assert isinstance(runner.run(running_loop()), uvloop.Loop)


def test_asyncio_asked_for_is_the_standard_loop() -> None:
    assert loop_factory("asyncio", "svc") is None


def test_uvloop_that_cannot_be_imported_falls_back_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import raises ImportError
    caplog.set_level(logging.WARNING, logger="svc")
    assert loop_factory("uvloop", "svc") is None
    assert [r.getMessage() for r in caplog.records] == [
        "uvloop cannot be imported; running on asyncio's own event loop"
    ]
