"""Structured logs on stderr, with fields passed as ``extra``: one JSON object per line for
machines (files, pipes, containers), one readable line per record on a terminal.

``LEDGER_LOG_FORMAT``: ``auto`` (the default) picks ``text`` when stderr is a terminal and
``json`` otherwise, so ``ledger up`` in a shell reads well and its logs in a file or a
collector stay machine-readable.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


FORMATS = ("auto", "json", "text")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """What the caller passed as ``extra``."""
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD and not key.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``12:04:05.123 WARNING projectors.relay: relay lag  position=7 lag=3``: the time in
    the terminal's own zone, the same fields as the JSON, values quoted only when needed."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        line = f"{moment} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields = " ".join(f"{key}={_shown(value)}" for key, value in _fields(record).items())
        if fields:
            line += "  " + fields
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if not text or any(c.isspace() or c in '"=' for c in text) else text


def configure(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Log to ``stream`` (stderr) at ``level``, in ``fmt`` (one of ``FORMATS``)."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("eventsourcing").setLevel("WARNING")
