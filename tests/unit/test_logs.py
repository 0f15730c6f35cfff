"""Logs read well on a terminal and stay JSON everywhere else (LEDGER_LOG_FORMAT=auto)."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator

import pytest

from runtime import logs
from runtime.settings import Settings, SettingsError


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_auto_writes_json_when_stderr_is_not_a_terminal() -> None:
    stream = io.StringIO()
    logs.configure("INFO", "auto", stream)
    logging.getLogger("projectors.relay").info("relay lag", extra={"position": 7, "lag": 3})
    entry = json.loads(stream.getvalue())
    assert (entry["level"], entry["logger"], entry["msg"]) == ("info", "projectors.relay", "relay lag")
    assert (entry["position"], entry["lag"]) == (7, 3)


def test_auto_writes_readable_lines_on_a_terminal() -> None:
    """A real pseudo-terminal, as a shell running `ledger up` gives its children."""
    controller, terminal = os.openpty()
    try:
        with open(terminal, "w", closefd=False) as stream:
            assert stream.isatty()
            logs.configure("INFO", "auto", stream)
            logging.getLogger("devstack.supervisor").warning(
                "service ready", extra={"service": "relay", "pid": 42, "note": "a b"}
            )
        line = os.read(controller, 4096).decode()
    finally:
        os.close(controller)
        os.close(terminal)
    assert not line.lstrip().startswith("{")
    assert "WARNING devstack.supervisor: service ready" in line
    assert 'service=relay pid=42 note="a b"' in line


def test_the_text_format_keeps_the_fields_and_the_exception() -> None:
    stream = io.StringIO()
    logs.configure("INFO", "text", stream)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("chain").exception("payout failed", extra={"payout": "p=1", "empty": "", "n": None})
    text = stream.getvalue()
    assert 'payout failed  payout="p=1" empty="" n=null' in text
    assert "Traceback" in text and "ValueError: boom" in text


def test_a_log_format_that_is_not_known_is_refused() -> None:
    with pytest.raises(SettingsError, match="LEDGER_LOG_FORMAT must be auto, json or text"):
        Settings.from_env({"LEDGER_LOG_FORMAT": "xml"}, discover=False)
    assert Settings.from_env({}, discover=False).log_format == "auto"
