"""The chain worker SIGKILLed at every step boundary, with Horizon faults injected, paying
single payouts and the rows of payout runs.

The worker runs as `ledger chain` in its own process and kills itself with SIGKILL at the
step named by LEDGER_CHAIN_KILL_AT (after intake, after storing an envelope, after a
submission before its answer is recorded, after recording before the ledger is told,
after requesting a run's rows before noting it).
It is started again and again, each time to die at another boundary, then once to
finish. In the end every payout is confirmed or failed, the chain holds exactly one
payment per confirmed payout and none per failed one, and the ledger agrees with the
chain. The chain is the bundled Horizon simulator (no Stellar network is reachable).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stellar_sdk import Keypair

from chain.kill_switch import STEPS
from chain.stellar import Keys, stroops_of
from commands import run_files
from commands.application import Books
from commands.event_store import event_store_env
from commands.messages import Deposit, OpenAccount, PayoutRunAction, RequestPayout, RowRequest, UploadPayoutRun
from devstack.horizon_sim import Simulator
from ledger.payout_runs import row_payout_id
from projectors.relay import Relay, RelayState
from runtime.settings import PROJECT_ROOT
from tests.conftest import Urls, free_port, unique

PASSPHRASE = "Ledger crash-test network"
FAULTS = ["applied_then_504", "reset_after", "reset_before", "bad_seq", "slow"]


@pytest.fixture
def relayed(servers: Urls) -> Iterator[tuple[Books, str]]:
    """A ledger whose events a background relay keeps publishing to a fresh topic."""
    books = Books(event_store_env(servers.settings()), payout_assets={"XLM/7": "native"})
    topic = unique("chain-events")
    relay = Relay(
        books,
        RelayState(servers.database_url, topic),
        servers.database_url,
        servers.producer(),
        servers.topic_watch(topic, 2),
    )
    relay.start()
    stop = threading.Event()

    def publish() -> None:
        while not stop.is_set():
            if not relay.publish_batch():
                stop.wait(0.05)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    yield books, topic
    stop.set()
    thread.join(10)
    relay.state.close()
    books.close()


def run_worker(env: dict[str, str], kill_at: str | None, until: Any, timeout: float) -> int | None:
    """Run `ledger chain` until it dies or ``until()`` holds; returns its exit code (None: stopped by us)."""
    child_env = dict(env)
    if kill_at:
        child_env["LEDGER_CHAIN_KILL_AT"] = kill_at
    process = subprocess.Popen([sys.executable, "-m", "entrypoints.cli", "chain"], env=child_env, cwd=PROJECT_ROOT)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                return code
            if until():
                break
            time.sleep(0.1)
        return None
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_a_worker_killed_at_every_step_pays_each_payout_once(
    servers: Urls, relayed: tuple[Books, str], tmp_path: Path
) -> None:
    books, topic = relayed
    sim = Simulator("127.0.0.1", free_port(), PASSPHRASE, close_seconds=0.2).start()
    try:
        keys = Keys.generate(channels=2)
        secrets = tmp_path / "keys.json"
        keys.save(secrets)
        env = {
            **os.environ,
            "PYTHONPATH": str(PROJECT_ROOT / "src"),
            "LEDGER_DATABASE_URL": servers.database_url,
            "LEDGER_KAFKA_BOOTSTRAP": servers.kafka_bootstrap,
            "LEDGER_KAFKA_TOPIC": topic,
            "LEDGER_KAFKA_PARTITIONS": "2",
            "LEDGER_HORIZON_URL": sim.url,
            "LEDGER_STELLAR_NETWORK_PASSPHRASE": PASSPHRASE,
            "LEDGER_STELLAR_SECRETS_FILE": str(secrets),
            "LEDGER_STELLAR_ASSETS": "XLM/7=native",
            "LEDGER_CHAIN_TX_TIMEOUT_SECONDS": "2",
            "LEDGER_CHAIN_LEDGER_WINDOW": "5",
            "LEDGER_LOG_LEVEL": "WARNING",
        }
        rng = random.Random(7)
        payer = unique("payer")
        books.open_account(OpenAccount(payer, "XLM/7"))
        books.deposit(Deposit(unique("d"), payer, "1000"))
        payouts: dict[str, tuple[str, bool]] = {}  # id -> (destination, payable)

        def request_payouts(n: int) -> None:
            for _ in range(n):
                destination = Keypair.random().public_key
                payable = rng.random() < 0.75
                if payable:
                    sim.network.create_account(destination, "1")
                payout_id = unique("crash")
                books.request_payout(RequestPayout(payout_id, payer, f"{rng.randint(1, 9)}.5", destination))
                payouts[payout_id] = (destination, payable)

        runs: list[str] = []

        def start_runs(n: int) -> None:
            """Payout runs of 3 rows, started: their payouts are requested by the worker."""
            for _ in range(n):
                run_id = unique("run")
                rows = []
                for number in range(1, 4):
                    destination = Keypair.random().public_key
                    payable = rng.random() < 0.75
                    if payable:
                        sim.network.create_account(destination, "1")
                    rows.append(RowRequest(f"r{number}", payer, f"{rng.randint(1, 9)}.25", destination, number=number))
                    payouts[row_payout_id(run_id, f"r{number}", 1)] = (destination, payable)
                books.upload_payout_run(UploadPayoutRun(run_id, tuple(rows), run_files.fingerprint(rows)))
                books.payout_run_action(PayoutRunAction(run_id, "start"))
                runs.append(run_id)

        def ended() -> bool:
            finished = all((run := books.run_record(r)) is not None and run.state == "completed" for r in runs)
            return finished and all((record := books.payout_record(p)) is not None and record.resolved for p in payouts)

        kills: dict[str, int] = {}
        for round_ in range(2):
            for step in STEPS:
                request_payouts(3)
                start_runs(2)
                sim.network.inject(rng.choice(FAULTS), count=2, delay=0.5)
                code = run_worker(env, f"{step}:{1 + round_}", ended, timeout=30)
                if code == -signal.SIGKILL:
                    kills[step] = kills.get(step, 0) + 1
        assert set(kills) == set(STEPS), f"the worker died at {kills}"
        sim.network.faults.clear()
        assert run_worker(env, None, ended, timeout=90) is None, "the last worker should still be running"
        assert ended()

        paid = 0
        for payout_id, (destination, payable) in payouts.items():
            record = books.payout_record(payout_id)
            assert record is not None
            payments = [p for p in sim.network.payments if p["to"] == destination]
            if record.state == "confirmed":
                assert payable, payout_id
                assert len(payments) == 1 and payments[0]["transaction_hash"] == record.tx_hash, payout_id
                paid += record.amount
            else:
                assert not payable and record.reason == "op_no_destination", (payout_id, record.reason)
                assert payments == []
        account = books.account(payer)
        assert (account.pending_debits, account.posted_debits) == (0, paid)
        assert account.available == 10_000_000_000 - paid
        sent = sum(stroops_of(p["amount"]) for p in sim.network.payments if p["from"] == keys.distribution.public_key)
        assert sent == paid  # the chain paid out exactly what the ledger posted
        for run_id in runs:
            run = books.run_record(run_id)
            assert run is not None
            unpaid = sum(1 for n in range(1, 4) if not payouts[row_payout_id(run_id, f"r{n}", 1)][1])
            assert (run.state, run.failed) == ("completed", unpaid), run_id
    finally:
        sim.stop()
