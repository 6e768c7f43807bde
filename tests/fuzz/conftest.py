"""Fuzz runs: the long mode lifts the per-test timeout; the session ends with input counts."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from hostdev_testing import fuzz


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A long run takes as long as its inputs do: no per-test timeout then."""
    if fuzz.long_mode():
        for item in items:
            if "tests/fuzz/" in str(item.path).replace("\\", "/"):
                item.add_marker(pytest.mark.timeout(0))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Inputs fed to each entry point in this run."""
    lines = fuzz.summary()
    if lines:
        terminalreporter.section("fuzz inputs per entry point")
        for line in lines:
            terminalreporter.write_line(line)


class HandlerFailures(logging.Handler):
    """Records the runner's 'handler failed' logs: an exception no handler turned into a
    typed error (the caller then sees code `internal`, or nothing for an event)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.failures: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.failures.append(f"{record.getMessage()}: {getattr(record, 'subject', '')}")


@pytest.fixture
def handler_failures() -> Iterator[HandlerFailures]:
    """Handler exceptions logged by any service running as a task in this test."""
    recorder = HandlerFailures()
    logger = logging.getLogger("hostdev_runtime.runner")
    logger.addHandler(recorder)
    try:
        yield recorder
    finally:
        logger.removeHandler(recorder)
