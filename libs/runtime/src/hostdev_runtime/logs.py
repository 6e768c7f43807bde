"""Logging set up once per process: JSON lines off a terminal, with the trace ID."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from opentelemetry import trace

# Attributes every LogRecord has; anything else came from `extra=` and is logged as a field.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

# A field's text beyond this is cut: an error can quote a whole request (a claim name of a
# megabyte from a broken or hostile caller), and one such line must not flood the node's
# log pipeline. The cut says how much was left out.
MAX_FIELD_CHARS = 4096


def _capped(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        left_out = len(value) - MAX_FIELD_CHARS
        return f"{value[:MAX_FIELD_CHARS]}... ({left_out} more characters)"
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace_id, extra fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": _capped(record.getMessage()),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"] = f"{span.trace_id:032x}"
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                line[key] = _capped(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup_logging(service: str, level: str) -> None:
    """Configure the root logger for a service process."""
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
