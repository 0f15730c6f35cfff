"""Payout runs: a file checked whole, then started, paused, resumed, cancelled and retried,
each row paid exactly once by the chain worker, and shown by the query API.

The chain is the bundled Horizon simulator (no Stellar network is reachable here); the
event store, Kafka, MongoDB and the worker's tables are real. The worker's parts (the
intake, the run driver, both channels) are stepped in this process.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import falcon.testing
import psycopg
import pytest
from stellar_sdk import Keypair

from auth.store import KeyStore
from chain.channel import ChannelWorker, channel_horizon
from chain.kill_switch import KillSwitch
from chain.runs import RunDriver, RunStore
from commands.application import Books
from commands.http import create_app
from commands.messages import AccountAction, Deposit, OpenAccount
from contracts.events import from_message
from contracts.stored_events import StoredEventEncoder
from ledger.payout_runs import MAX_ROWS, row_payout_id
from projectors.views import ReadModelWriter
from queries import http as query_http
from queries import runs as query_runs
from tests.conftest import Urls, api_client, store_beside, unique
from tests.integration.test_chain import Chain, chain_on


@pytest.fixture(scope="module")
def own_store(servers: Urls) -> Urls:
    """An event store of this module's own (a database beside the shared one): its runs
    write thousands of events, which every test that projects the whole shared store
    would otherwise read again."""
    return store_beside(servers)


@pytest.fixture
def chain(own_store: Urls) -> Iterator[Chain]:
    with chain_on(own_store) as made:
        yield made


@pytest.fixture
def event_count(own_store: Urls) -> Callable[[], int]:
    def count() -> int:
        with psycopg.connect(own_store.database_url) as conn:
            row = conn.execute("SELECT count(*) FROM ledger_events").fetchone()
        return int(row[0]) if row else 0

    return count


@pytest.fixture
def runs(chain: Chain, own_store: Urls) -> Iterator[RunDriver]:
    store = RunStore(own_store.database_url)
    yield RunDriver(store, chain.books)
    store.close()


@pytest.fixture
def client(chain: Chain, keys: KeyStore, admin_token: str) -> falcon.testing.TestClient:
    return api_client(create_app(chain.books, keys=keys), admin_token)


def csv_of(rows: list[tuple[str, ...]], header: str = "id,account,amount,destination,memo") -> bytes:
    return ("\n".join([header, *(",".join(row) for row in rows)]) + "\n").encode()


def upload(client: falcon.testing.TestClient, run_id: str, body: bytes) -> Any:
    return client.simulate_post(
        "/v1/payout-runs", params={"id": run_id}, body=body, headers={"Content-Type": "text/csv"}
    )


def drive(chain: Chain, runs: RunDriver, done: Callable[[], bool], timeout: float = 120) -> None:
    """Relay, take in, request rows and pay on both channels until ``done``, a step at a time."""
    workers = [chain.worker(0), chain.worker(1)]
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the run did not get there"
        while chain.relay.publish_batch():
            pass
        chain.intake.poll(0.02)
        runs.step()
        for worker in workers:
            worker.work_once()


def drive_threaded(chain: Chain, runs: RunDriver, done: Callable[[], bool], channels: int, timeout: float) -> None:
    """As the worker runs: the run driver and ``channels`` channels in threads of their own
    (more channels than the fixture's, each a fresh funded account), relay and intake here."""
    workers = []
    for _ in range(channels):
        key = Keypair.random()
        chain.sim.network.create_account(key.public_key, "100")
        workers.append(
            ChannelWorker(
                chain.settings,
                chain.store,
                chain.books,
                channel_horizon(chain.settings.horizon_url),
                key,
                KillSwitch(None),
            )
        )
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,), daemon=True) for w in [*workers, runs]]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "the run did not get there"
            while chain.relay.publish_batch():
                pass
            chain.intake.poll(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


def run_state(chain: Chain, run_id: str) -> str:
    run = chain.books.run_record(run_id)
    assert run is not None
    return run.state


def funded(chain: Chain, amount: str = "1000") -> str:
    return chain.funded_account("XLM/7", amount)


def test_a_file_with_bad_rows_is_refused_whole_then_accepted_corrected(
    chain: Chain, client: falcon.testing.TestClient, event_count: Any
) -> None:
    payer, frozen = funded(chain), funded(chain)
    chain.books.account_action(AccountAction(frozen, "freeze"))
    euro = unique("eur")
    chain.books.open_account(OpenAccount(euro, "EUR/2"))
    good = chain.destination()
    run_id = unique("run")
    bad = [
        ("1", payer, "10", good, "ok"),
        ("2", payer, "1.123456789", good, ""),
        ("3", payer, "5", "GABC", ""),
        ("1", payer, "5", good, ""),
        ("5", "nobody-" + unique("x"), "5", good, ""),
        ("6", frozen, "5", good, ""),
        ("7", euro, "5", good, ""),
        ("8", payer, "0", good, ""),
        ("9", payer, "1", good, "x" * 29),
    ]
    before = event_count()
    refused = upload(client, run_id, csv_of(bad))
    assert (refused.status_code, refused.json["code"]) == (422, "invalid_rows"), refused.json
    report = [(r["row"], r["field"], r["code"]) for r in refused.json["rows"]]
    assert report == [
        (2, "amount", "invalid_amount"),  # more decimals than the account's asset has
        (3, "destination", "invalid_destination"),
        (4, "id", "duplicate_id"),
        (5, "account", "account_not_found"),
        (6, "account", "account_not_open"),
        (7, "account", "asset_not_on_chain"),
        (8, "amount", "invalid_amount"),
        (9, "memo", "invalid_memo"),
    ]
    too_big = upload(client, run_id, csv_of([("1", payer, "922337203685.4775808", good, "")]))
    assert [(r["row"], r["code"]) for r in too_big.json["rows"]] == [(1, "amount_exceeds_chain_limit")]
    assert event_count() == before

    rows = [("1", payer, "10", good, "ok"), ("2", payer, "2.5", chain.destination(), "")]
    created = upload(client, run_id, csv_of(rows))
    assert created.status_code == 201, created.json
    assert (created.json["state"], created.json["rows"], created.json["totals"]) == (
        "ready",
        2,
        {"XLM/7": "12.5000000"},
    )
    again = upload(client, run_id, csv_of(rows))
    assert (again.json, again.headers.get("idempotent-replayed")) == (created.json, "true")
    as_json = {"id": run_id, "rows": [dict(zip(("id", "account", "amount", "destination", "memo"), r)) for r in rows]}
    as_json["rows"][1].pop("memo")
    assert client.simulate_post("/v1/payout-runs", json=as_json).json == created.json  # the same file, as JSON
    other = upload(client, run_id, csv_of(rows[:1]))
    assert (other.status_code, other.json["code"]) == (409, "id_conflict")
    assert upload(client, unique("run"), b"id,account\n1,a\n").status_code == 400
    lone = json.dumps({"id": unique("run"), "rows": [{**as_json["rows"][0], "memo": "\ud800"}]}).encode()
    surrogate = client.simulate_post("/v1/payout-runs", body=lone, headers={"Content-Type": "application/json"})
    assert [(r["row"], r["code"]) for r in surrogate.json["rows"]] == [(1, "invalid_memo")]  # no UTF-8 holds it
    plain = client.simulate_post("/v1/payout-runs", body=b"x", headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415
    no_id = client.simulate_post("/v1/payout-runs", body=csv_of(rows), headers={"Content-Type": "text/csv"})
    assert (no_id.status_code, no_id.json["code"]) == (400, "invalid_request")


def test_a_file_of_10000_rows_the_most_a_run_has_is_stored_in_chunks_and_started(
    servers: Urls, keys: KeyStore, admin_token: str
) -> None:
    """The largest run, through the command side: checked whole, stored and requested a
    chunk of 250 rows at a time (the 1,000-row test pays its rows on the simulator; the
    payout-run benchmark pays a run of 10,000 end to end). On an event store of its own:
    its 10,000 payouts, never paid here, must not reach the other tests' workers."""
    big = store_beside(servers)
    with chain_on(big) as chain:
        run_store = RunStore(big.database_url)
        try:
            held = _held_rows_of_the_largest_run(chain, RunDriver(run_store, chain.books), keys, admin_token)
        finally:
            run_store.close()
    assert held == [2_500 * 15_000_000] * 4  # every row requested: its amount held on its payer


def _held_rows_of_the_largest_run(chain: Chain, runs: RunDriver, keys: KeyStore, admin_token: str) -> list[int]:
    client = api_client(create_app(chain.books, keys=keys), admin_token)
    payers = [funded(chain, "10000") for _ in range(4)]
    destinations = [chain.destination() for _ in range(8)]
    rows = [(str(n), payers[n % 4], "1.5", destinations[n % 8], "") for n in range(MAX_ROWS)]
    run_id = unique("run")
    too_many = upload(client, run_id, csv_of([*rows, ("extra", payers[0], "1", destinations[0], "")]))
    assert (too_many.status_code, too_many.json["code"]) == (400, "invalid_request")
    created = upload(client, run_id, csv_of(rows))
    assert created.status_code == 201, created.json
    assert (created.json["rows"], created.json["totals"]) == (MAX_ROWS, {"XLM/7": "15000.0000000"})
    run = chain.books.run_record(run_id)
    assert run is not None and run.chunks == MAX_ROWS // 250
    assert client.simulate_post(f"/v1/payout-runs/{run_id}/start").status_code == 200
    while chain.relay.publish_batch():
        pass
    deadline = time.monotonic() + 120
    while run_id not in {known["run_id"] for known in runs.store.open_runs()}:  # the hint, taken in
        assert time.monotonic() < deadline
        chain.intake.poll(0.1)
    while runs.step():  # a chunk a step
        assert time.monotonic() < deadline
    return [chain.books.account(payer).pending_debits for payer in payers]


def test_a_run_of_1000_rows_completes_with_every_row_paid_once_and_shows_in_the_query_api(
    chain: Chain, runs: RunDriver, client: falcon.testing.TestClient, mongo_db: Any, keys: KeyStore, admin_token: str
) -> None:
    chain.settle()
    chain.sim.network.accounts[chain.keys.distribution.public_key].balances["native"] += 10_000 * 10**7
    payers = [funded(chain, "10000") for _ in range(4)]
    destinations = [chain.destination() for _ in range(1000)]
    rows = [(f"r{n}", payers[n % 4], f"1.{n:03d}", destinations[n], f"m{n}") for n in range(1000)]
    run_id = unique("run")
    start = chain.books.head_position()
    assert upload(client, run_id, csv_of(rows)).status_code == 201
    started = client.simulate_post(f"/v1/payout-runs/{run_id}/start")
    assert (started.status_code, started.json["state"]) == (200, "started")
    assert client.simulate_post(f"/v1/payout-runs/{run_id}/start").json["state"] == "started"  # a repeat
    drive_threaded(chain, runs, lambda: run_state(chain, run_id) == "completed", channels=8, timeout=300)

    for n, destination in enumerate(destinations):
        [paid] = chain.payments_to(destination)
        assert paid["amount"] == f"1.{n:03d}0000"
    confirmed = chain.store.conn().execute(
        "SELECT count(*) AS n FROM chain_payouts WHERE payout_id LIKE %s AND state = 'confirmed'", (f"{run_id}$%",)
    )
    assert confirmed.fetchone()["n"] == 1000
    paid_each = [sum(1_0000000 + n * 10_000 for n in range(k, 1000, 4)) for k in range(4)]
    for payer, total in zip(payers, paid_each, strict=True):
        account = chain.books.account(payer)
        assert (account.posted_debits, account.pending_debits) == (total, 0)
    run = chain.books.run_record(run_id)
    assert run is not None and (run.state, run.failed) == ("completed", 0)

    project(chain.books, mongo_db, start)
    reader = api_client(query_http.create_app(mongo_db, wait_seconds=0.3, keys=keys), admin_token)
    view = reader.simulate_get(f"/v1/payout-runs/{run_id}")
    assert view.status_code == 200, view.json
    assert (view.json["state"], view.json["counts"]) == (
        "completed",
        {"ready": 0, "pending": 0, "success": 1000, "failed": 0},
    )
    assert view.json["amounts"]["success"] == view.json["totals"]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"state": "success", "limit": "300", **({"cursor": cursor} if cursor else {})}
        page = reader.simulate_get(f"/v1/payout-runs/{run_id}/rows", params=params).json
        seen += [row["row"] for row in page["rows"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"r{n}" for n in range(1000)]
    assert reader.simulate_get(f"/v1/payout-runs/{run_id}/rows", params={"state": "failed"}).json["rows"] == []


def project(books: Books, db: Any, after: int) -> None:
    """Project the events written since ``after`` (this test's) into a fresh read model."""
    writer = ReadModelWriter(db)
    writer.create_indexes()
    encoder = StoredEventEncoder(books)
    position = after
    while True:
        batch = books.recorder.select_notifications(start=position, limit=500, inclusive_of_start=False)
        if not batch:
            return
        messages = [encoder.encode(n) for n in batch]
        writer.apply_batch([from_message(m.headers, m.value) for m in messages])
        position = batch[-1].id


def test_a_paused_run_submits_nothing_new_until_resumed(
    chain: Chain, runs: RunDriver, client: falcon.testing.TestClient
) -> None:
    chain.settle()
    payer = funded(chain)
    rows = [(f"r{n}", payer, "1", chain.destination(), "") for n in range(30)]
    run_id = unique("run")
    assert upload(client, run_id, csv_of(rows)).status_code == 201
    assert client.simulate_post(f"/v1/payout-runs/{run_id}/start").status_code == 200

    def submitted() -> int:
        found = chain.store.conn().execute(
            "SELECT count(DISTINCT payout_id) AS n FROM chain_envelopes WHERE payout_id LIKE %s", (f"{run_id}$%",)
        )
        return int(found.fetchone()["n"])

    drive(chain, runs, lambda: submitted() >= 3)
    paused = client.simulate_post(f"/v1/payout-runs/{run_id}/pause")
    assert (paused.status_code, paused.json["state"]) == (200, "paused")
    at_pause = submitted()
    stop = time.monotonic() + 3
    drive(chain, runs, lambda: time.monotonic() > stop)
    assert submitted() == at_pause < 30
    assert chain.books.account(payer).pending_debits > 0  # the rows not paid are held, not released
    resumed = client.simulate_post(f"/v1/payout-runs/{run_id}/resume")
    assert (resumed.status_code, resumed.json["state"]) == (200, "started")
    drive(chain, runs, lambda: run_state(chain, run_id) == "completed")
    assert all(len(chain.payments_to(row[3])) == 1 for row in rows)
    assert chain.books.account(payer).posted_debits == 300_000_000


def test_cancelling_a_paused_run_releases_the_rows_not_submitted(
    chain: Chain, runs: RunDriver, client: falcon.testing.TestClient
) -> None:
    chain.settle()
    payer = funded(chain)
    rows = [(f"r{n}", payer, "1", chain.destination(), "") for n in range(12)]
    ready = unique("run")
    assert upload(client, ready, csv_of(rows)).status_code == 201
    assert client.simulate_post(f"/v1/payout-runs/{ready}/cancel").json["state"] == "cancelled"
    late = client.simulate_post(f"/v1/payout-runs/{ready}/start")
    assert (late.status_code, late.json["code"]) == (409, "payout_run_state")

    run_id = unique("run")
    assert upload(client, run_id, csv_of(rows)).status_code == 201
    assert client.simulate_post(f"/v1/payout-runs/{run_id}/start").status_code == 200
    chain.sim.network.inject("reset_before", count=1000)  # what is submitted stays in the air
    drive(chain, runs, lambda: any(chain.store.envelopes(row_payout_id(run_id, row[0], 1)) for row in rows))
    assert client.simulate_post(f"/v1/payout-runs/{run_id}/pause").status_code == 200
    assert client.simulate_post(f"/v1/payout-runs/{run_id}/cancel").json["state"] == "cancelled"
    chain.sim.network.faults.clear()

    def ended() -> bool:
        records = [chain.books.payout_record(row_payout_id(run_id, row[0], 1)) for row in rows]
        return all(r is not None and r.resolved for r in records)

    drive(chain, runs, ended)
    records = {row[0]: chain.books.payout_record(row_payout_id(run_id, row[0], 1)) for row in rows}
    submitted = {r for r in records if chain.store.envelopes(row_payout_id(run_id, r, 1))}
    assert submitted and len(submitted) < len(rows)
    for row_id, record in records.items():
        assert record is not None
        if row_id in submitted:  # already in the air: it ends as the chain says
            assert record.state == "confirmed"
        else:
            assert (record.state, record.reason) == ("failed", "run cancelled")
    account = chain.books.account(payer)
    assert (account.pending_debits, account.posted_debits) == (0, len(submitted) * 10_000_000)
    assert sum(len(chain.payments_to(row[3])) for row in rows) == len(submitted)


def test_failed_rows_retried_after_the_fix_are_paid_and_no_other_row_twice(
    chain: Chain, runs: RunDriver, client: falcon.testing.TestClient
) -> None:
    chain.settle()
    payer, poor = funded(chain), funded(chain, "1")
    missing = Keypair.random().public_key  # not on chain yet
    rows = [
        ("a", payer, "2", chain.destination(), ""),
        ("b", payer, "3", missing, ""),
        ("c", poor, "5", chain.destination(), ""),  # more than it holds: refused when requested
    ]
    run_id = unique("run")
    assert upload(client, run_id, csv_of(rows)).status_code == 201
    premature = client.simulate_post(f"/v1/payout-runs/{run_id}/retry")
    assert (premature.status_code, premature.json["code"]) == (409, "payout_run_state")
    assert client.simulate_post(f"/v1/payout-runs/{run_id}/start").status_code == 200
    drive(chain, runs, lambda: run_state(chain, run_id) == "completed")
    run = chain.books.run_record(run_id)
    assert run is not None and run.failed == 2 and run.refused == {"c": 1}
    failed = chain.books.payout_record(row_payout_id(run_id, "b", 1))
    assert failed is not None and (failed.state, failed.reason) == ("failed", "op_no_destination")

    chain.sim.network.create_account(missing, "1")  # the fix
    chain.books.deposit(Deposit(unique("d"), poor, "10"))
    retried = client.simulate_post(f"/v1/payout-runs/{run_id}/retry")
    assert (retried.status_code, retried.json["state"], retried.json["attempt"]) == (200, "started", 2)
    drive(chain, runs, lambda: run_state(chain, run_id) == "completed")
    run = chain.books.run_record(run_id)
    assert run is not None and (run.failed, run.attempt) == (0, 2)
    assert [len(chain.payments_to(row[3])) for row in rows] == [1, 1, 1]
    assert chain.books.payout_record(row_payout_id(run_id, "a", 2)) is None  # paid in the first attempt only
    done = client.simulate_post(f"/v1/payout-runs/{run_id}/retry")
    assert (done.status_code, done.json["code"]) == (409, "payout_run_state")


def test_rows_come_out_right_whatever_order_subjects_interleave_in(
    chain: Chain, runs: RunDriver, client: falcon.testing.TestClient, mongo_db: Any
) -> None:
    """Kafka keeps order per subject only: a row's payout may be read before the chunk
    that adds the row, or after it; either way the row ends as the payout did."""
    chain.settle()
    payer = funded(chain)
    rows = [(f"r{n}", payer, "1", chain.destination(), "") for n in range(3)]
    run_id = unique("run")
    start = chain.books.head_position()
    assert upload(client, run_id, csv_of(rows)).status_code == 201
    assert client.simulate_post(f"/v1/payout-runs/{run_id}/start").status_code == 200
    drive(chain, runs, lambda: run_state(chain, run_id) == "completed")
    encoder = StoredEventEncoder(chain.books)
    notifications = chain.books.recorder.select_notifications(start=start, limit=10_000, inclusive_of_start=False)
    events = [from_message(m.headers, m.value) for m in map(encoder.encode, notifications)]
    chunk_last = sorted(events, key=lambda e: e.type == "ledger.payout_run.rows_added.v1")  # stable: per subject kept
    writer = ReadModelWriter(mongo_db)
    writer.create_indexes()
    for event in chunk_last:
        writer.apply(event)
    view, accounts = query_runs.run_view(mongo_db, run_id)
    assert (view["state"], view["counts"], accounts) == (
        "completed",
        {"ready": 0, "pending": 0, "success": 3, "failed": 0},
        [payer],
    )
    page = query_runs.rows_page(mongo_db, run_id, None, 10, None)
    assert [(r["row"], r["state"], r["amount"], r["payout"]) for r in page["rows"]] == [
        (f"r{n}", "success", "1.0000000", row_payout_id(run_id, f"r{n}", 1)) for n in range(3)
    ]


def test_a_chunk_requested_again_after_a_crash_keeps_its_refused_rows_refused(
    chain: Chain, client: falcon.testing.TestClient
) -> None:
    """The worker died after requesting a chunk, before noting it: the chunk is requested
    again, by then the poor account has money, and still its row is not paid in this
    attempt (it was refused; a retry pays it)."""
    payer, poor = funded(chain), funded(chain, "1")
    run_id = unique("run")
    rows = [("a", payer, "2", chain.destination(), ""), ("c", poor, "5", chain.destination(), "")]
    assert upload(client, run_id, csv_of(rows)).status_code == 201
    assert client.simulate_post(f"/v1/payout-runs/{run_id}/start").status_code == 200
    chunk = chain.books.run_chunk(run_id, 0)
    assert chunk is not None
    assert chain.books.request_run_rows(run_id, 1, chunk.parsed()) == {"requested": 1, "refused": 1}
    chain.books.deposit(Deposit(unique("d"), poor, "10"))
    assert chain.books.request_run_rows(run_id, 1, chunk.parsed()) == {"requested": 1, "refused": 0}
    assert chain.books.payout_record(row_payout_id(run_id, "c", 1)) is None
    # An operator may cancel a run's payout like any other (its id is RUN$ROW$ATTEMPT).
    cancelled = client.simulate_post(f"/v1/payouts/{row_payout_id(run_id, 'a', 1)}/cancel")
    assert (cancelled.status_code, cancelled.json["cancel_requested"]) == (202, "cancelled by an operator")
    bad_id = client.simulate_post(f"/v1/payouts/{run_id}$-x$1/cancel")
    assert bad_id.status_code == 400
