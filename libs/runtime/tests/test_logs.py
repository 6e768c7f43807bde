"""The JSON log lines a service writes."""

from __future__ import annotations

import json
import logging

from hostdev_runtime.logs import MAX_FIELD_CHARS, JsonFormatter


def _line(message: str, **extra: object) -> dict[str, object]:
    record = logging.makeLogRecord({"msg": message, "levelname": "WARNING", "name": "t", **extra})
    decoded: dict[str, object] = json.loads(JsonFormatter("preparer").format(record))
    return decoded


def test_a_megabyte_error_field_is_cut_to_a_bounded_line_that_says_how_much_was_left_out() -> None:
    huge = "x" * 1_000_000
    line = _line("claim failed", error=huge, claim_uid="u1")
    error = str(line["error"])
    assert error.startswith("x" * MAX_FIELD_CHARS)
    assert error.endswith(f"({1_000_000 - MAX_FIELD_CHARS} more characters)")
    assert line["claim_uid"] == "u1"


def test_a_huge_message_is_cut_and_short_fields_are_kept_as_they_are() -> None:
    line = _line("y" * (MAX_FIELD_CHARS + 10), attempt=3, ok=True)
    assert str(line["message"]).endswith("(10 more characters)")
    assert line["attempt"] == 3
    assert line["ok"] is True


def test_a_structured_field_stays_structured() -> None:
    line = _line("listed", devices=["a", "b"])
    assert line["devices"] == ["a", "b"]
