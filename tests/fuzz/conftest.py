"""Fuzz runs: the long mode lifts the per-test timeout; the session ends with input counts."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostdev_testing import fuzz


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A long run takes as long as its inputs do: no per-test timeout then. Hypothesis warns
    that the repr of a 1 MB failing input is large; that warning must not replace the
    failure it reports."""
    for item in items:
        if "tests/fuzz/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.filterwarnings("ignore:Generating overly large repr"))
            if fuzz.long_mode():
                item.add_marker(pytest.mark.timeout(0))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Inputs fed to each entry point in this run."""
    lines = fuzz.summary()
    if lines:
        terminalreporter.section("fuzz inputs per entry point")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The counts, as JSON, for scripts/fuzz_long.py to sum over its processes."""
    target = os.environ.get(fuzz.COUNTS_ENV)
    if target:
        Path(target).write_text(json.dumps(dict(fuzz.COUNTS)))


@pytest.fixture(autouse=True)
def errors_only_in_long_runs() -> Iterator[None]:
    """A long run makes hundreds of thousands of expected failures, each logged at WARNING
    with its error text (up to 1 MB for the huge inputs); pytest would keep every record
    for the report. Only ERROR records (an unexpected exception) are kept then."""
    root = logging.getLogger()
    level = root.level
    if fuzz.long_mode():
        root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


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
