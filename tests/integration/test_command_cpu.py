"""benchmarks/command_cpu.py runs the application in-process against a real event store
and prints its CPU per transfer (the figure is not checked: it is a benchmark)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import Urls, benchmark_module

command_cpu = benchmark_module("command_cpu")


def test_it_measures_singles_and_batches(
    servers: Urls, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no `ledger up` of the checkout to find
    monkeypatch.setenv("LEDGER_DATABASE_URL", servers.writer_url)
    # Small: the read-side tests after this one relay the whole shared store again.
    argv = ["--singles", "5", "--batches", "2", "--batch-size", "3", "--accounts", "2", "--warm-up", "0"]
    assert command_cpu.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"^singles: \d+\.\d{3} ms CPU per transfer \(5 in", out, re.MULTILINE), out
    assert re.search(r"^batches of 3: \d+\.\d{3} ms CPU per transfer \(6 in", out, re.MULTILINE), out
    with pytest.raises(SystemExit):
        command_cpu.main(["--accounts", "1"])
