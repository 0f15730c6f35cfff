"""The crash tests' hook: a worker that kills itself at a named step."""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger(__name__)


STEPS = ("intake", "stored", "submitted", "recorded", "requested")  # requested: a run's chunk of payouts


class KillSwitch:
    """Test hook: ``LEDGER_CHAIN_KILL_AT=step[:n]`` SIGKILLs the worker at the n-th pass
    (default 1st) through a step boundary, so a test can crash it exactly there."""

    def __init__(self, spec: str | None) -> None:
        step, _, count = (spec or "").partition(":")
        if step and step not in STEPS:
            raise ValueError(f"LEDGER_CHAIN_KILL_AT: unknown step {step!r}; one of {', '.join(STEPS)}")
        if not (count or "1").isdigit() or int(count or 1) < 1:
            raise ValueError(f"LEDGER_CHAIN_KILL_AT: {count!r} is not a pass count (1, 2, ...)")
        self.step = step or None
        self.remaining = int(count or 1)
        self.lock = threading.Lock()

    def passed(self, step: str) -> None:
        if step != self.step:
            return
        with self.lock:
            self.remaining -= 1
            if self.remaining == 0:
                log.warning("killed at a step boundary (LEDGER_CHAIN_KILL_AT)", extra={"step": step})
                os.kill(os.getpid(), signal.SIGKILL)
