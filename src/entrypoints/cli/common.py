"""What every `ledger` subcommand shares: settings, exit codes, signals, readiness."""

from __future__ import annotations

import logging
import os
import signal
import threading
from datetime import UTC, datetime
from typing import Any

import click

from runtime import logs
from runtime.settings import Settings, SettingsError

log = logging.getLogger("ledger")

STOP_GRACE_SECONDS = 10.0


class Group(click.Group):
    """A group whose commands may let a ``SettingsError`` (a server URL not set, a bad
    value) rise: it is shown as the one-line error it is, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            log.debug("settings refused", exc_info=True)
            raise click.ClickException(str(exc)) from None


class NothingDone(click.ClickException):
    """Exit 2: nothing was done (bad input, settings, a server unreachable); commands keep 1
    for what they found (differences, failed rows)."""

    exit_code = 2


def load_settings(*, discover: bool = True) -> Settings:
    settings = Settings.from_env(discover=discover)
    logs.configure(settings.log_level, settings.log_format)
    return settings


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT/SIGTERM. A worker that has not finished stopping after a
    grace period exits anyway: when its supervisor died, the servers it would say
    goodbye to (broker, database) are going down with it, and a client library closing
    a connection to a vanished server can wait far longer than anyone should."""
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        if not stop.is_set():
            watchdog = threading.Timer(STOP_GRACE_SECONDS, os._exit, args=(1,))
            watchdog.daemon = True
            watchdog.start()
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def ready(settings: Settings, operations_url: str | None = None) -> None:
    """Tell ``ledger up`` the service is ready: its ready file, holding the URL of its
    /metrics and /readyz (if it serves them), which the supervisor publishes."""
    if settings.ready_file is not None:
        settings.ready_file.parent.mkdir(parents=True, exist_ok=True)
        written = settings.ready_file.with_suffix(".tmp")
        written.write_text(operations_url or "")
        written.replace(settings.ready_file)  # whole, or not there: the supervisor reads it once it exists


def moment(value: str | None) -> datetime | None:
    """An RFC 3339 option as a UTC datetime (None when not given)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise click.BadParameter(f"{value!r} needs a time zone (e.g. Z)")
    return parsed.astimezone(UTC)
