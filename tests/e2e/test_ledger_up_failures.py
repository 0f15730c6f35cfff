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


def stack_env(data_dir: Path, command_port: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "LEDGER_DATA_DIR": str(data_dir),
            "LEDGER_COMMAND_PORT": str(command_port or free_port()),
            "LEDGER_QUERY_PORT": str(free_port()),
            "LEDGER_EMBEDDED_POSTGRES_PORT": str(free_port()),
            "LEDGER_EMBEDDED_KAFKA_PORT": str(free_port()),
            "LEDGER_EMBEDDED_MONGO_PORT": str(free_port()),
            "LEDGER_EMBEDDED_HORIZON_PORT": str(free_port()),
        }
    )
    return env


def alive(pids: set[int]) -> list[int]:
    result = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                result.append(pid)
        except psutil.NoSuchProcess:
            pass
    return result


def test_a_second_instance_is_refused_and_a_killed_supervisor_takes_its_children_along(tmp_path: Path) -> None:
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        first = subprocess.Popen(
            [sys.executable, "-m", "entrypoints.cli", "up"],
            env=stack_env(tmp_path),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while "ledger is up" not in log.read_text(errors="replace"):
            assert first.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-2000:]
            time.sleep(0.2)
        second = subprocess.run(
            [sys.executable, "-m", "entrypoints.cli", "up", "--fresh"],
            env=stack_env(tmp_path),
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1
        assert b"another `ledger up` is using" in second.stderr
        assert (tmp_path / "postgres" / "PG_VERSION").exists()  # --fresh did not wipe a running instance
        processes = psutil.Process(first.pid).children(recursive=True)
        names = {p.pid: " ".join(p.cmdline()[:3]) for p in processes}
        children = set(names)
        assert len(children) >= 7
    finally:
        first.kill()
        first.wait()
    deadline = time.monotonic() + 30
    while alive(children) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = alive(children)
    for pid in survivors:  # never leave one behind, even when failing
        psutil.Process(pid).kill()
    assert [names[pid] for pid in survivors] == []


def test_a_service_that_cannot_start_is_reported_and_everything_stops(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = stack_env(tmp_path, command_port=port)
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "entrypoints.cli", "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
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
    assert alive(seen) == []
