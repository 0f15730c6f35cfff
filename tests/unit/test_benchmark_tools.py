"""The parts of the write benchmarks (benchmarks/write_ratio.py, cpu_budget.py,
http_front.py) that can break without a stack to measure: argument handling, the load's
transfers, the tally of answers, the CPU accounting of process trees (on real
processes), and the HTTP front's own measurement (on a real gunicorn it starts)."""

from __future__ import annotations

import contextlib
import fcntl
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import benchmark_module

write_ratio = benchmark_module("write_ratio")
cpu_budget = benchmark_module("cpu_budget")
ledger_load = benchmark_module("ledger_load")
http_front = benchmark_module("http_front")
sql_reference = benchmark_module("sql_reference")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--loads", "4,bogus"], "unknown bogus"),
        (["--loads", ","], "none given"),
        (["--seconds", "0"], "--seconds"),
        (["--batch-size", "101"], "--batch-size"),
        (["--warmup", "-1"], "--warmup"),
    ],
)
def test_write_ratio_refuses_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        write_ratio.parse_args(argv)
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_write_ratio_loads_come_in_the_tables_order() -> None:
    args = write_ratio.parse_args(["--loads", "batch,hot,1", "--batch-size", "50"])
    assert [load.key for load in args.load_list] == ["1", "hot", "batch"]
    hot, batch = args.load_list[1], args.load_list[2]
    assert (hot.clients, hot.hot, hot.batch) == (4, True, 0)
    assert (batch.clients, batch.batch, batch.title) == (4, 50, "4 clients, `POST /v1/transfer-batches` of 50")
    assert [load.key for load in write_ratio.parse_args([]).load_list] == ["1", "4", "8", "hot", "batch"]


def test_the_reproducing_command_never_shows_the_token() -> None:
    args = write_ratio.parse_args(["--seconds", "5", "--token", "lk_x.secret", "--command", "http://h:1"])
    command = write_ratio.reproduce_command(args)
    assert "secret" not in command
    assert command.startswith(".venv/bin/python benchmarks/write_ratio.py --seconds 5 --loads 1,4,8,hot,batch")
    assert '--token "$TOKEN"' in command and "--command http://h:1" in command


@pytest.mark.parametrize("script", ["write_ratio.py", "cpu_budget.py"])
def test_without_a_running_stack_the_benchmarks_say_so(script: str, tmp_path: Path) -> None:
    """Run as a user would: no stack in the data directory, nothing given: a clear error, exit 2."""
    benchmarks = Path(write_ratio.__file__).parent
    done = subprocess.run(
        [sys.executable, str(benchmarks / script), "--data-dir", str(tmp_path), "--seconds", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")},
    )
    assert done.returncode == 2, done.stderr
    assert "no running `ledger up`" in done.stderr and "make run" in done.stderr
    assert done.stdout == ""


def test_cpu_budget_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--rate", "0"], ["--seconds", "0"], ["--senders", "0"], ["--rate", "x"]):
        with pytest.raises(SystemExit) as exit:
            cpu_budget.parse_args(argv)
        assert exit.value.code == 2
    assert "--rate" in capsys.readouterr().err
    args = cpu_budget.parse_args(["--with-reference"])
    assert (args.rate, args.seconds, args.senders, args.batch, args.with_reference) == (50.0, 20, 4, 0, True)
    with pytest.raises(SystemExit):
        cpu_budget.parse_args(["--batch", "101"])
    assert "--batch must be between 0 and 100" in capsys.readouterr().err


def test_a_paced_load_in_batches_keeps_the_rate_in_transfers() -> None:
    """40 transfers/s in batches of 10 from 2 senders: one request per sender every 0.5 s,
    against a server that answers every batch (the transfers it carries are counted)."""
    with _answering_server() as url:
        stack = ledger_load.Stack(url, None, "t")
        outcome = ledger_load.run_paced(stack, ["a", "b"], 40.0, 1.0, "p", senders=2, batch=10)
    assert outcome.requests == 4
    assert outcome.transfers == 40


def test_http_front_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--clients", "x"], ["--seconds", "0"], ["--rates", "0"], ["--clients", "", "--rates", ""]):
        with pytest.raises(SystemExit) as exit:
            http_front.parse_args(argv)
        assert exit.value.code == 2
    assert "nothing to run" in capsys.readouterr().err


def test_http_front_measures_a_real_server_and_stops_it(capsys: pytest.CaptureFixture[str]) -> None:
    """One closed-loop client for a second against the empty app under the project's
    gunicorn config: requests answered 201, CPU on both sides, the server gone after."""
    import psutil

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    assert http_front.main(["--seconds", "1", "--clients", "1", "--rates", "", "--compare", "1000", "--json", "-"]) == 0
    out = capsys.readouterr().out
    document = json.loads(out[out.index("{") :])
    (row,) = document["rows"]
    assert row["statuses"] == {"201": row["statuses"]["201"]} and row["rate"] > 0
    assert row["server_ms"] > 0 and row["client_ms"] > 0
    assert "the front alone would use" in out
    assert {p.pid for p in psutil.Process().children(recursive=True)} == before


def test_a_stack_given_by_url_and_token_needs_no_state_file(tmp_path: Path) -> None:
    stack = ledger_load.find_stack(tmp_path, "http://127.0.0.1:9/", None, "lk_a.b")
    assert (stack.command, stack.query, stack.token, stack.database_url) == ("http://127.0.0.1:9", None, "lk_a.b", None)
    with pytest.raises(ledger_load.StackNotFound):
        ledger_load.find_stack(tmp_path, "http://127.0.0.1:9/")


def test_a_running_stack_is_found_in_its_data_directory(tmp_path: Path) -> None:
    """As `ledger up` leaves it: the directory locked, the state file, the admin key."""
    (tmp_path / "run").mkdir()
    urls = {"command_api": "http://127.0.0.1:9181", "query_api": "http://127.0.0.1:9182"}
    settings = {"kafka_topic": "ledger.events"}
    state = {"supervisor": 1, "urls": urls, "settings": settings, "admin_key_file": str(tmp_path / "admin.key")}
    (tmp_path / "run" / "state.json").write_text(json.dumps(state))
    (tmp_path / "admin.key").write_text("lk_k.s\n")
    lock = os.open(tmp_path, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        stack = ledger_load.find_stack(tmp_path)
        assert (stack.command, stack.query, stack.token, stack.state) == (*urls.values(), "lk_k.s", state)
        # another ledger by URL: nothing of the local stack is taken for it
        other = ledger_load.find_stack(tmp_path, "http://127.0.0.1:1", token="lk_o.t")
        assert (other.query, other.token, other.data_dir, other.state) == (None, "lk_o.t", None, {})
        with pytest.raises(ledger_load.StackNotFound):
            ledger_load.find_stack(tmp_path, "http://127.0.0.1:1")
    finally:
        os.close(lock)


def test_cpu_budget_measures_every_process_the_supervisor_publishes() -> None:
    state = {"supervisor": 10, "children": {"postgres": 11, "command-api": 12, "relay": None}}
    assert cpu_budget.stack_processes(state) == {"supervisor": 10, "postgres": 11, "command-api": 12}


def test_transfers_are_between_distinct_accounts_with_new_ids() -> None:
    accounts = [f"a{n}" for n in range(5)]
    uniform = ledger_load.Transfers(accounts, "run-0", seed=1)
    bodies = [uniform.one() for _ in range(2_000)]
    assert all(b["debit_account"] != b["credit_account"] for b in bodies)
    assert {b["debit_account"] for b in bodies} == {b["credit_account"] for b in bodies} == set(accounts)
    assert len({b["id"] for b in bodies}) == len(bodies)
    hot = ledger_load.Transfers(accounts, "run-1", hot=True, seed=2)
    assert {hot.one()["debit_account"] for _ in range(200)} == {"a0"}
    path, body, count = hot.request(3)
    assert (path, count, len(orjson.loads(body)["transfers"])) == ("/v1/transfer-batches", 3, 3)
    assert hot.request(0)[0::2] == ("/v1/transfers", 1)


def test_the_tally_counts_transfers_not_requests() -> None:
    tally = ledger_load.Tally()
    tally.record(201, b'{"id": "t", "position": 7}', 1, 0.010, batch=False, late=False)
    tally.record(422, b'{"code": "insufficient_funds"}', 1, 0.020, batch=False, late=False)
    tally.record(0, b"", 1, 0.030, batch=False, late=False)  # no answer
    results = [{"status": 201, "body": {"position": 12}}, {"status": 409, "body": {}}, {"status": 201, "body": {"position": 11}}]  # fmt: skip
    tally.record(200, json.dumps({"results": results}).encode(), 3, 0.040, batch=True, late=False)
    tally.record(201, b'{"position": 13}', 1, 0.050, batch=False, late=True)  # answered after the window
    outcome = ledger_load.Outcome.merge([tally, ledger_load.Tally()], window=2.0, seconds=2.5, client_cpu=0.1)
    assert outcome.statuses == {0: 1, 201: 4, 409: 1, 422: 1}
    assert (outcome.requests, outcome.transfers, outcome.in_window, outcome.refused) == (5, 4, 3, 3)
    assert outcome.rate == 1.5  # 3 in the window of 2 s
    assert outcome.position == 13
    assert (outcome.p50_ms, outcome.p99_ms) == pytest.approx((30.0, 50.0))


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert [ledger_load.percentile(values, q) for q in (0.5, 0.99, 1.0)] == [50.0, 99.0, 100.0]
    assert ledger_load.percentile([3.0], 0.99) == 3.0
    assert ledger_load.percentile([1.0, 2.0, 3.0, 4.0], 0.3) == 2.0  # rank ceil(1.2) = 2


def test_cpu_of_a_process_tree_counts_children_that_ended() -> None:
    Times = cpu_budget.Times
    before = {1: Times(0.0, 0, own=10.0, reaped=1.0), 2: Times(5.0, 1, own=2.0, reaped=0.0)}
    # pid 2 ended after 3 s in all (1 s of it in the window), reaped by 1; pid 3 is new
    after = {1: Times(0.0, 0, own=10.5, reaped=4.0), 3: Times(9.0, 1, own=0.25, reaped=0.0)}
    assert cpu_budget.cpu_between(before, after) == pytest.approx(0.5 + 3.0 - 2.0 + 0.25)
    assert cpu_budget.cpu_between(before, after, reaped=False) == pytest.approx(0.5 + 0.25)
    # a pid reused by another process is a new process (the old one ended at 2.5 s in all)
    reused = {1: Times(0.0, 0, own=10.0, reaped=3.5), 2: Times(7.0, 1, own=0.5, reaped=0.0)}
    assert cpu_budget.cpu_between(before, reused) == pytest.approx(2.5 - 2.0 + 0.5)


def test_cpu_of_a_real_child_that_ended_is_counted() -> None:
    """A child that burns CPU and exits within the window shows up in our tree's time."""
    before = cpu_budget.snapshot(os.getpid())
    burn = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\n"
    subprocess.run([sys.executable, "-c", burn], check=True, timeout=60)
    after = cpu_budget.snapshot(os.getpid())
    # Counted in clock ticks (10 ms) and summed as floats: 0.4 s burnt reads as a little
    # less or more, never as the nothing a child left uncounted would.
    assert cpu_budget.cpu_between(before, after) >= 0.3


def test_the_reference_is_warned_off_another_disk(tmp_path: Path) -> None:
    """A durable commit costs what its disk costs: both sides must be on one."""
    assert sql_reference.reference_parent(tmp_path, tmp_path) == (tmp_path, None)
    parent, warning = sql_reference.reference_parent(None, Path("/proc"))
    assert parent.is_dir() and warning is not None and "--reference-dir" in warning


@contextlib.contextmanager
def _answering_server() -> Iterator[str]:
    """A stand-in for the command API that answers every request 201 with a position: the
    load's pacing and tally are what is under test here, not the ledger."""

    class Answer(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b'{"position": 1}'
            self.send_response(201)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
