"""Logging: JSON lines by default (`LEDGERGATE_LOG_FORMAT=json`), plain text for development
(`text`). Every line logged while a request runs carries its trace id (and span id when
tracing is on); the access line carries the request's facts (see middleware.py).

What a log line may hold is decided where it is logged: ids, names, numbers and error codes.
Prompts, completions, keys and PII values are never logged (tests/e2e/test_observability.py
and the PII leak scan check the JSON lines).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.observability.core import current

LOG_FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Attributes every LogRecord has: anything else was passed in `extra=` and is a field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class TraceContextFilter(logging.Filter):
    """Adds the current request's trace id (and span id) to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "trace_id", None) is None:
            observation = current()
            if observation is not None and observation.trace_id is not None:
                record.trace_id = observation.trace_id
                if observation.span_id is not None:
                    record.span_id = observation.span_id
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """The development format: the classic line, then the extra fields as key=value."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = [
            f"{name}={value}"
            for name, value in vars(record).items()
            if name not in _STANDARD and not name.startswith("_") and value is not None
        ]
        return text + (" " + " ".join(extra) if extra else "")


def formatter_for(log_format: str) -> logging.Formatter:
    return TextFormatter() if log_format == "text" else JsonFormatter()


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the process's stderr as it is at each line, not as it was when logging was
    configured: a caller that swaps sys.stderr (a test runner's capture, a CLI runner) and
    closes its stream afterwards must not leave every later line failing on a closed file."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: str = "INFO", log_format: str = "json") -> None:
    """The process's logging: one stderr handler with the chosen format and the trace filter.
    uvicorn is started with log_config=None so its lines go through the same handler."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LEDGERGATE_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
    handler = StderrHandler()
    handler.setFormatter(formatter_for(log_format))
    handler.addFilter(TraceContextFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream call is noise
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python narrates every connection
