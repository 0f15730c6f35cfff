"""`ledger chain reconcile`: the chain's payments against the books.

Each test has its own Horizon simulator, keys and a ledger asset of its own (so its own
clearing account: the event store and the worker's tables are shared by every test of
the session). Payouts go through the real chain worker and deposits through the real
deposit follower; the differences are made as they would happen: payments signed outside
the ledger with the distribution key kept in the data directory, a payout confirmed with
a transaction that is not what it asked for, a worker row that lost track.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from prometheus_client import REGISTRY
from stellar_sdk import Asset, Keypair, Server, TransactionBuilder

from auth.store import KeyStore
from chain.channel import ChannelWorker, channel_horizon
from chain.config import ChainSettings
from chain.deposits import DepositFollower
from chain.kill_switch import KillSwitch
from chain.reconcile import Reconciler, Report, reconciler_horizon, run_once
from chain.stellar import Keys, horizon_client
from chain.store import ChainStore
from commands.application import Books
from commands.event_store import event_store_env
from commands.messages import Deposit, OpenAccount, RequestPayout
from devstack.horizon_sim import Simulator
from runtime.settings import PROJECT_ROOT
from tests.conftest import Urls, free_port, run_ledger, unique

PASSPHRASE = "Ledger reconcile test network"


@dataclass
class Chain:
    servers: Urls
    sim: Simulator
    keys_file: Path  # the keys as `ledger up` keeps them in its data directory
    asset: str  # a ledger asset of this test's own
    stellar: Asset
    books: Books
    store: ChainStore
    settings: ChainSettings

    @property
    def distribution(self) -> Keypair:
        return Keys.load(self.keys_file).distribution

    def reconcile(self, since: datetime | None = None) -> Report:
        return Reconciler(self.settings, self.store, self.books, reconciler_horizon(self.settings.horizon_url)).run(
            since
        )

    def env(self) -> dict[str, str]:
        """What `ledger chain reconcile` is given: it only reads, so as the reader role."""
        return {
            "LEDGER_DATABASE_URL": self.servers.reader_url,
            "LEDGER_HORIZON_URL": self.sim.url,
            "LEDGER_STELLAR_SECRETS_FILE": str(self.keys_file),
            "LEDGER_STELLAR_ASSETS": f"{self.asset}={self.stellar.code}:{self.stellar.issuer}",
        }

    def cli(self, *args: str) -> tuple[int, dict[str, Any]]:
        done = run_ledger("chain", "reconcile", *args, env=self.env(), timeout=120)
        assert done.returncode in (0, 1), done.stderr
        return done.returncode, json.loads(done.stdout)

    def account(self, amount: str = "100") -> str:
        account = unique("payer")
        self.books.open_account(OpenAccount(account, self.asset))
        self.books.deposit(Deposit(unique("d"), account, amount))
        return account

    def destination(self, *, trust: bool = True) -> str:
        account = Keypair.random().public_key
        self.sim.network.create_account(account, "1")
        if trust:
            self.sim.network.trust(account, f"{self.stellar.code}:{self.stellar.issuer}")
        return account

    def request(self, account: str, amount: str, destination: str) -> str:
        payout_id = unique("p")
        self.books.request_payout(RequestPayout(payout_id, account, amount, destination, None))
        return payout_id

    def pay_out(
        self, account: str, amount: str, destination: str, *, until: tuple[str, ...] = ("confirmed", "failed")
    ) -> dict[str, Any]:
        """A payout through the chain worker, until its row is in one of ``until``. It is
        taken in as the intake would, and bound to this test's channel as the worker would
        bind it, so the worker never takes another test's leftover payouts."""
        payout_id = self.request(account, amount, destination)
        record = self.books.payout_record(payout_id)
        assert record is not None
        taken = {"payout": payout_id, "account": account, "asset": self.asset, "amount": str(record.amount)}
        self.store.take_in([taken | {"destination": destination, "memo": None}], [], {})
        channel = self.settings.keys.channels[0]
        self.store.update(payout_id, state="bound", channel=channel.public_key)
        worker = ChannelWorker(
            self.settings, self.store, self.books, channel_horizon(self.settings.horizon_url), channel, KillSwitch(None)
        )
        deadline = time.monotonic() + 30
        while (row := self.row(payout_id))["state"] not in until:
            assert time.monotonic() < deadline, row
            worker.work_once()
        return row

    def row(self, payout_id: str) -> dict[str, Any]:
        row = self.store.conn().execute("SELECT * FROM chain_payouts WHERE payout_id = %s", (payout_id,)).fetchone()
        assert row is not None
        return row

    def pay(self, source: Keypair, destination: str, amount: str, memo: str | None = None) -> dict[str, Any]:
        """A payment signed here, outside the chain worker."""
        server = Server(self.sim.url)
        builder = TransactionBuilder(server.load_account(source.public_key), PASSPHRASE, 100)
        builder.append_payment_op(destination, self.stellar, amount).set_timeout(30)
        if memo:
            builder.add_text_memo(memo)
        envelope = builder.build()
        envelope.sign(source)
        return server.submit_transaction(envelope, skip_memo_required_check=True)

    def customer(self) -> Keypair:
        """Someone on chain holding the asset, to send deposits."""
        key = Keypair.random()
        self.sim.network.create_account(key.public_key, "10")
        self.sim.network.trust(key.public_key, f"{self.stellar.code}:{self.stellar.issuer}")
        self.sim.network.fund(key.public_key, f"{self.stellar.code}:{self.stellar.issuer}", "100")
        return key


@pytest.fixture
def chain(servers: Urls, tmp_path: Path) -> Iterator[Chain]:
    sim = Simulator("127.0.0.1", free_port(), PASSPHRASE, close_seconds=0.2).start()
    keys, issuer = Keys.generate(channels=2), Keypair.random()
    keys_file = tmp_path / "data" / "stellar-keys.json"
    keys_file.parent.mkdir()
    keys.save(keys_file)
    code = "R" + uuid.uuid4().hex[:11].upper()
    stellar = Asset(code, issuer.public_key)
    for key in (keys.distribution, *keys.channels, issuer):
        sim.network.create_account(key.public_key, "1000")
    sim.network.trust(keys.distribution.public_key, f"{code}:{issuer.public_key}")
    sim.network.fund(keys.distribution.public_key, f"{code}:{issuer.public_key}", "1000")  # not a payment
    asset = f"{code}/7"
    books = Books(event_store_env(servers.settings()), payout_assets={asset: f"{code}:{issuer.public_key}"})
    settings = ChainSettings(
        horizon_url=sim.url,
        passphrase=PASSPHRASE,
        assets={asset: stellar},
        keys=keys,
        tx_timeout_seconds=2,
        ledger_window=5,
        backoff_seconds=0.02,
        max_backoff_seconds=0.1,
    )
    store = ChainStore(servers.database_url)
    yield Chain(servers, sim, keys_file, asset, stellar, books, store, settings)
    store.close()
    books.close()
    sim.stop()


def kinds(report: Report | dict[str, Any]) -> list[str]:
    differences = report.differences if isinstance(report, Report) else report["differences"]
    return sorted(d["kind"] for d in differences)


def test_payouts_paid_and_a_deposit_credited_reconcile_without_a_difference(chain: Chain) -> None:
    account = chain.account()
    assert chain.pay_out(account, "12.5", chain.destination())["state"] == "confirmed"
    assert chain.pay_out(account, "3", chain.destination())["state"] == "confirmed"
    assert chain.pay_out(account, "40", chain.destination(trust=False))["state"] == "failed"  # nothing paid
    chain.pay(chain.customer(), chain.distribution.public_key, "7", memo=account)
    while DepositFollower(chain.settings, chain.store, chain.books, horizon_client(chain.settings.horizon_url)).poll():
        pass
    assert chain.books.account(account).available == 1_000_000_000 - 155_000_000 + 70_000_000

    report = chain.reconcile()
    assert report.differences == []
    assert (report.checked["payouts_confirmed"], report.checked["deposits"], report.checked["payments"]) == (2, 1, 3)
    assert report.checked["clearing"][chain.asset]["posted"] == {"expected": "8.5000000", "actual": "8.5000000"}

    code, printed = chain.cli()
    assert (code, printed["differences"], printed["since"]) == (0, [], None)
    assert printed["checked"]["payouts_confirmed"] == 2


def test_a_payout_applied_on_chain_and_not_yet_confirmed_is_in_flight_not_a_difference(chain: Chain) -> None:
    account, destination = chain.account(), chain.destination()
    chain.sim.network.inject("slow", count=1, delay=4)  # applied at once, answered 4 s later
    ended: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: ended.update(chain.pay_out(account, "5", destination)))
    worker.start()
    deadline = time.monotonic() + 10
    while not chain.sim.network.payments:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    report = chain.reconcile()  # paid on chain, still pending in the books
    worker.join(30)
    assert report.differences == []
    assert report.checked["payouts_in_flight"] == 1
    assert report.checked["clearing"][chain.asset]["pending"] == {"expected": "5.0000000", "actual": "5.0000000"}
    assert ended["state"] == "confirmed"
    assert chain.reconcile().differences == []


def test_a_payment_from_the_distribution_account_outside_the_ledger_is_named(chain: Chain) -> None:
    account = chain.account()
    chain.pay_out(account, "2", chain.destination())
    stranger = chain.destination()
    paid = chain.pay(chain.distribution, stranger, "4")  # signed with the key in the data directory

    code, printed = chain.cli()
    assert code == 1
    assert kinds(printed) == ["chain_payment_without_payout", "clearing_balance_mismatch"]
    [outside] = [d for d in printed["differences"] if d["kind"] == "chain_payment_without_payout"]
    assert (outside["tx_hash"], outside["amount"], outside["to"]) == (paid["hash"], "4.0000000", stranger)
    assert (outside["from"], outside["asset"]) == (
        chain.distribution.public_key,
        f"{chain.stellar.code}:{chain.stellar.issuer}",
    )
    [clearing] = [d for d in printed["differences"] if d["kind"] == "clearing_balance_mismatch"]
    assert clearing["posted"] == {"expected": "6.0000000", "actual": "2.0000000"}  # the chain paid 4 more


def test_confirmed_payouts_the_chain_does_not_bear_out_are_named(chain: Chain) -> None:
    account = chain.account()
    # Confirmed with a transaction that is not on chain.
    ghost = chain.request(account, "1", chain.destination())
    chain.books.confirm_payout(ghost, "ab" * 32, 1)
    # Confirmed with a transaction that paid someone else, less.
    wrong = chain.request(account, "5", chain.destination())
    other = chain.destination()
    paid = chain.pay(chain.distribution, other, "4.5")
    chain.books.confirm_payout(wrong, paid["hash"], int(paid["ledger"]))
    # Paid as asked, but the worker's row says another transaction.
    row = chain.pay_out(account, "2", chain.destination())
    with psycopg.connect(chain.servers.database_url) as conn:
        conn.execute("UPDATE chain_payouts SET tx_hash = %s WHERE payout_id = %s", ("cd" * 32, row["payout_id"]))
    # A deposit the follower passed without crediting it.
    deposit = chain.pay(chain.customer(), chain.distribution.public_key, "3", memo=account)
    [payment] = [p for p in chain.sim.network.payments if p["transaction_hash"] == deposit["hash"]]
    chain.store.set_cursor(f"deposits:{chain.distribution.public_key}", payment["paging_token"])

    report = chain.reconcile()
    found = {d["kind"]: d for d in report.differences}
    assert kinds(report) == [
        "amount_mismatch",
        "clearing_balance_mismatch",
        "deposit_not_credited",
        "destination_mismatch",
        "payout_without_chain_payment",
        "worker_record_mismatch",
    ]
    assert (found["payout_without_chain_payment"]["payout"], found["payout_without_chain_payment"]["tx_hash"]) == (
        ghost,
        "ab" * 32,
    )
    amounts = {"payout": wrong, "ledger_amount": "5.0000000", "chain_amount": "4.5000000"}
    assert found["amount_mismatch"].items() >= amounts.items()
    assert (found["destination_mismatch"]["chain_destination"], found["destination_mismatch"]["tx_hash"]) == (
        other,
        paid["hash"],
    )
    assert found["worker_record_mismatch"]["worker"] == {"tx_hash": "cd" * 32}
    assert found["worker_record_mismatch"]["ledger"] == {"tx_hash": row["tx_hash"]}
    assert (found["deposit_not_credited"]["payment"], found["deposit_not_credited"]["amount"]) == (
        payment["id"],
        "3.0000000",
    )
    # Books: 1 + 5 + 2 posted, nothing paid in. Chain: 4.5 + 2 out, 3 in that should be.
    assert found["clearing_balance_mismatch"]["posted"] == {"expected": "3.5000000", "actual": "8.0000000"}


def test_since_leaves_older_differences_out(chain: Chain) -> None:
    old = chain.pay(chain.distribution, chain.destination(), "1")
    time.sleep(1.3)  # the chain's times are whole seconds
    since = datetime.now(UTC).replace(microsecond=0)
    time.sleep(0.5)  # past a ledger close (0.2 s) after it: the new payment's second is at or after it
    new = chain.pay(chain.distribution, chain.destination(), "2")

    everything = chain.reconcile()
    assert sorted(
        d.get("tx_hash", "") for d in everything.differences if d["kind"] != "clearing_balance_mismatch"
    ) == sorted([old["hash"], new["hash"]])
    recent = chain.reconcile(since)
    assert [(d["kind"], d["tx_hash"]) for d in recent.differences] == [("chain_payment_without_payout", new["hash"])]
    assert recent.checked["clearing"].startswith("skipped")

    code, printed = chain.cli("--since", since.isoformat())
    assert (code, printed["since"]) == (1, since.isoformat())
    assert [d["tx_hash"] for d in printed["differences"]] == [new["hash"]]


def test_the_service_gauges_the_difference_count_and_logs_each_difference_once(
    chain: Chain, caplog: pytest.LogCaptureFixture
) -> None:
    reconciler = Reconciler(chain.settings, chain.store, chain.books, reconciler_horizon(chain.settings.horizon_url))
    known: set[str] = set()
    started = time.time()
    run_once(reconciler, None, known)
    assert REGISTRY.get_sample_value("ledger_chain_differences") == 0
    assert REGISTRY.get_sample_value("ledger_chain_reconciled_timestamp_seconds") >= started  # type: ignore[operator]

    chain.pay(chain.distribution, chain.destination(), "1")
    with caplog.at_level(logging.WARNING, logger="chain.reconcile"):
        run_once(reconciler, None, known)  # (only the new payment is read from Horizon)
        run_once(reconciler, None, known)
    assert REGISTRY.get_sample_value("ledger_chain_differences") == 2  # the payment, the clearing balance
    logged = [r for r in caplog.records if r.getMessage() == "chain difference"]
    assert sorted(r.difference["kind"] for r in logged) == ["chain_payment_without_payout", "clearing_balance_mismatch"]  # type: ignore[attr-defined]


def test_the_service_serves_the_difference_count_on_its_metrics_port(
    chain: Chain, keys: KeyStore, tmp_path: Path
) -> None:
    key, secret = keys.create("tests: reconcile scraper", ["metrics"])
    ready = tmp_path / "reconcile.ready"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")} | chain.env()
    env |= {"LEDGER_METRICS_PORT": str(free_port()), "LEDGER_READY_FILE": str(ready), "LEDGER_LOG_FORMAT": "json"}
    env["PYTHONPATH"] = str(PROJECT_ROOT / "src")
    argv = [sys.executable, "-m", "entrypoints.cli", "chain", "reconcile", "--every", "1"]
    service = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert service.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        url = ready.read_text().strip() + "/metrics"

        def differences() -> float | None:
            page = requests.get(url, headers={"Authorization": f"Bearer {key.key_id}.{secret}"}, timeout=5)
            page.raise_for_status()
            found = re.search(r"^ledger_chain_differences ([0-9.]+)$", page.text, re.MULTILINE)
            return float(found.group(1)) if found else None

        while differences() != 0:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        chain.pay(chain.distribution, chain.destination(), "1")
        while differences() != 2:  # the payment, the clearing balance
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        service.send_signal(signal.SIGTERM)
        _, errors = service.communicate(timeout=30)
    assert service.returncode == 0, errors
    assert b"chain_payment_without_payout" in errors  # each difference is logged


def test_bad_input_exits_2_with_a_message(chain: Chain) -> None:
    unparseable = run_ledger("chain", "reconcile", "--since", "yesterday", env={}, timeout=60)
    assert unparseable.returncode == 2 and "RFC 3339" in unparseable.stderr
    unconfigured = run_ledger("chain", "reconcile", env={"LEDGER_DATABASE_URL": chain.servers.reader_url}, timeout=60)
    assert unconfigured.returncode == 2 and "LEDGER_STELLAR_SECRETS_FILE" in unconfigured.stderr
    no_horizon = chain.env() | {"LEDGER_HORIZON_URL": f"http://127.0.0.1:{free_port()}"}
    unreachable = run_ledger("chain", "reconcile", env=no_horizon, timeout=60)
    assert unreachable.returncode == 2 and "could not read the chain" in unreachable.stderr
    assert unreachable.stdout == ""  # no report: nothing was compared
