"""Child processes that are always stopped by their PID.

Each child asks the kernel to signal it when its parent dies (``PR_SET_PDEATHSIG``), so
a supervisor killed with SIGKILL does not leave servers behind either.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class ProcessExited(RuntimeError):
    """A child ended while we were waiting for it to become ready: waiting longer is pointless."""


def _die_with_parent(sig: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


class ManagedProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stop_signal: int = signal.SIGTERM,
        death_signal: int | None = None,
        grace_seconds: float = 10.0,
        log_file: Path | None = None,
        user: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(os.environ if env is None else env)
        self.stop_signal = stop_signal
        self.death_signal = stop_signal if death_signal is None else death_signal
        self.grace_seconds = grace_seconds
        self.log_file = log_file
        self.user = user
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> None:
        output: int | IO[bytes] | None = None
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log_handle = open(self.log_file, "ab")  # noqa: SIM115 - closed in stop()
            output = self._log_handle
        death_signal = self.death_signal
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=True,
            preexec_fn=lambda: _die_with_parent(death_signal),  # noqa: PLW1509
            user=self.user,
            cwd=self.cwd,
        )
        log.info("started", extra={"child": self.name, "pid": self.popen.pid})

    def poll(self) -> int | None:
        """The exit code if the process has ended, else None."""
        return self.popen.poll() if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        popen = self.popen
        if popen is not None and popen.poll() is None:
            popen.kill()
            popen.wait()

    def stop(self) -> int | None:
        """Ask politely, then SIGKILL after the grace period; always reaps the child."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(self.stop_signal)
                self.popen.wait(timeout=self.grace_seconds)
            except subprocess.TimeoutExpired:
                log.warning("did not stop in time, killing", extra={"child": self.name, "pid": self.popen.pid})
                self.popen.kill()
                self.popen.wait()
            except ProcessLookupError:
                pass
        code = self.popen.wait()
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        return code


def wait_until(check: object, timeout: float, what: str, *, interval: float = 0.1) -> None:
    """Call ``check()`` until it returns without raising, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except ProcessExited:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s (last error: {last})")
