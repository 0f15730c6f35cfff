"""`ledger up` when something cannot start: a clear message, a non-zero exit, nothing left."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.conftest import free_port


def test_a_service_that_cannot_start_is_reported_and_everything_stops(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(os.environ)
        env.update(
            {
                "LEDGER_DATA_DIR": str(tmp_path),
                "LEDGER_COMMAND_PORT": str(port),
                "LEDGER_QUERY_PORT": str(free_port()),
                "LEDGER_EMBEDDED_POSTGRES_PORT": str(free_port()),
                "LEDGER_EMBEDDED_KAFKA_PORT": str(free_port()),
                "LEDGER_EMBEDDED_MONGO_PORT": str(free_port()),
            }
        )
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        seen: set[int] = set()
        while process.poll() is None and time.monotonic() - started < 60:
            try:
                seen |= {p.pid for p in psutil.Process(process.pid).children(recursive=True)}
            except psutil.NoSuchProcess:
                break
            time.sleep(0.1)
        output = process.communicate(timeout=60)[0].decode(errors="replace")
    assert process.returncode == 1
    assert "command-api exited with code" in output
    assert len(seen) >= 4
    leftovers = [pid for pid in seen if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert leftovers == []
