"""`ledger up` as a user runs it: one command, every real component, then HTTP.

The stack runs on free ports in a temporary data directory. The tests in this module
share one stack and run in file order; the last one stops it and checks that no
process it started is left behind.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import psycopg
import pymongo
import pytest
import requests
from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from stellar_sdk import Keypair

from auth import signing
from commands.application import Books
from commands.event_store import event_store_env
from commands.run_files import MAX_REPORTED
from contracts.generations import Generations
from ledger.ids import account_uuid, transfer_uuid
from ledger.seals import SEAL_STREAM
from projectors.replay import differences
from runtime import kafka
from runtime.settings import Settings
from tests.conftest import free_port, run_ledger, unique

START_TIMEOUT = 90


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    started_in: float
    _http: requests.Session | None = None

    @property
    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.data_dir / "run" / "state.json").read_text()))

    @property
    def command(self) -> str:
        return str(self.state["urls"]["command_api"])

    @property
    def query(self) -> str:
        return str(self.state["urls"]["query_api"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def admin_token(self) -> str:
        """The admin key `ledger up` made on its first start (README: Keys)."""
        return (self.data_dir / "admin.key").read_text().strip()

    @property
    def checkout(self) -> Path:
        """The folder `ledger up` was started in: its data directory is ./.ledger there."""
        return self.data_dir.parent

    def cli_env(self) -> dict[str, str]:
        """What a `ledger` command run from the checkout beside this stack needs: nothing."""
        return {}

    def settings(self) -> Settings:
        """The stack's settings, found as the CLI finds them (passwords are not in state.json)."""
        return Settings.from_env({"LEDGER_DATA_DIR": str(self.data_dir)}, discover=True)

    def authorized_session(self) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.admin_token}"
        return session

    @property
    def http(self) -> requests.Session:
        if self._http is None:
            self._http = self.authorized_session()
        return self._http

    def post(self, path: str, body: dict[str, Any]) -> requests.Response:
        return self.http.post(self.command + path, json=body, timeout=30)

    def payee(self) -> str:
        """A new account on the stack's Horizon simulator, to pay out to (README: the walk-through)."""
        account = Keypair.random().public_key
        made = requests.post(
            f"{self.state['urls']['horizon_url']}/_sim/accounts", json={"account_id": account}, timeout=10
        )
        assert made.status_code < 300, made.text
        return account

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def read_model_differences(self, probe_account: str, timeout: float) -> list[str]:
        """Wait until the query API has applied the event store's head, then compare the
        active read model with a replay of the event store."""
        settings = self.settings()
        books = Books(event_store_env(settings))
        client: pymongo.MongoClient[Any] = pymongo.MongoClient(settings.mongo_url)
        try:
            head = books.head_position()
            url = f"{self.query}/v1/accounts/{probe_account}"
            wait_for(
                lambda: self.http.get(url, params={"min_position": head}, timeout=30).status_code == 200,
                timeout,
                "the read model to reach the head",
            )
            return differences(books, Generations(client, "ledger").active_database())
        finally:
            client.close()
            books.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        return int(self.process.returncode)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("checkout") / ".ledger"
    data_dir.mkdir()
    env = dict(os.environ)
    env.update(
        {
            "LEDGER_DATA_DIR": str(data_dir),
            "LEDGER_COMMAND_PORT": str(free_port()),
            "LEDGER_QUERY_PORT": str(free_port()),
            "LEDGER_EMBEDDED_POSTGRES_PORT": str(free_port()),
            "LEDGER_EMBEDDED_KAFKA_PORT": str(free_port()),
            "LEDGER_EMBEDDED_MONGO_PORT": str(free_port()),
            "LEDGER_EMBEDDED_HORIZON_PORT": str(free_port()),
            "LEDGER_SEAL_INTERVAL_SECONDS": "2",
        }
    )
    for name in ("LEDGER_DATABASE_URL", "LEDGER_KAFKA_BOOTSTRAP", "LEDGER_MONGO_URL"):
        env.pop(name, None)
    log_path = data_dir / "up.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "entrypoints.cli", "up"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=data_dir.parent,
        )
    stack = Stack(process, data_dir, log_path, 0.0)
    try:
        while "ledger is up" not in stack.log():
            assert process.poll() is None, f"ledger up exited early:\n{stack.log()[-3000:]}"
            assert time.monotonic() - started < START_TIMEOUT, f"not up after {START_TIMEOUT}s:\n{stack.log()[-3000:]}"
            time.sleep(0.2)
        stack.started_in = time.monotonic() - started
        yield stack
    finally:
        survivors = stack.descendants() if process.poll() is None else []
        stack.stop()
        for child in survivors:
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                child.kill()


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_it_serves_both_apis_within_90_seconds(stack: Stack) -> None:
    assert stack.started_in < START_TIMEOUT
    assert requests.get(stack.command + "/healthz", timeout=5).json() == {"status": "ok"}
    assert requests.get(stack.query + "/healthz", timeout=5).json() == {"status": "ok"}
    print(f"\nledger up served both APIs after {stack.started_in:.1f}s")


def test_the_embedded_broker_topic_has_one_partition(stack: Stack) -> None:
    """Fewer record batches for Tansu to list on every fetch (devstack.supervisor)."""
    settings = stack.settings()
    admin = kafka.admin_client(settings.kafka_client())
    wait_for(lambda: settings.kafka_topic in admin.list_topics(timeout=10).topics, 30, "the topic")
    _, partitions = kafka.ensure_topic(admin, settings.kafka_topic, 4)
    assert partitions == 1


def test_nothing_answers_without_a_key_and_no_secret_lies_about(stack: Stack) -> None:
    for url in (stack.query + "/v1/status", stack.command + "/v1/keys"):
        reply = requests.get(url, timeout=10)
        assert reply.status_code == 401 and reply.headers["content-type"] == "application/problem+json", url
    deposit = {"id": unique("d"), "account": "A", "amount": "100.00"}
    minted = requests.post(stack.command + "/v1/deposits", data=json.dumps(deposit), headers={"Content-Type": ""})
    assert minted.status_code == 401
    # the admin key: printed once, kept private
    token = stack.admin_token
    assert stack.log().count(token) == 1
    for private in ("admin.key", "secrets/postgres.json", "secrets/stack.json", "stellar-keys.json"):
        assert (stack.data_dir / private).stat().st_mode & 0o077 == 0, private
    # the state file names the servers but holds no password
    state_text = (stack.data_dir / "run" / "state.json").read_text()
    passwords = json.loads((stack.data_dir / "secrets" / "postgres.json").read_text())
    assert set(passwords) == {"postgres", "ledger_writer", "ledger_reader"}
    assert not any(pw in state_text for pw in passwords.values())
    assert not any(pw in stack.log() for pw in passwords.values())
    # PostgreSQL asks for a password; the services' roles cannot rewrite history
    url = urlsplit(stack.settings().database_url or "")
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(f"postgresql://postgres@{url.hostname}:{url.port}/ledger", connect_timeout=5)
    with psycopg.connect(stack.settings().database_url or "", autocommit=True) as writer:
        assert writer.execute("SELECT current_user").fetchone() == ("ledger_writer",)
        for statement in (
            "UPDATE ledger_events SET state = state WHERE notification_id = 1",
            "DELETE FROM ledger_events WHERE notification_id = 1",
            (
                "INSERT INTO ledger_events (originator_id, originator_version, topic, state, hash, write_position) "
                "VALUES (gen_random_uuid(), 1, 't', '{}', '', 1)"
            ),
            "TRUNCATE ledger_events",
            "LOCK TABLE ledger_events IN EXCLUSIVE MODE",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), writer.transaction():
                writer.execute(statement)
    with psycopg.connect(stack.settings().audit_database_url or "", autocommit=True) as reader:
        assert reader.execute("SELECT current_user").fetchone() == ("ledger_reader",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("SELECT ledger_append(ARRAY[]::stored_event_uuid[])")


def test_signed_requests_and_revocation_hold_across_every_api_process(stack: Stack) -> None:
    made = run_ledger("keys", "create", "--name", "e2e", "--scope", "read", env={}, cwd=stack.checkout)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    path = "/v1/status"
    header = signing.signed_header(key["key_id"], key["secret"], "GET", path)
    assert requests.get(stack.query + path, headers={"Authorization": header}, timeout=10).status_code == 200
    # the same signed request again, to whichever worker process takes it: refused by all
    replays = [requests.get(stack.query + path, headers={"Authorization": header}, timeout=10) for _ in range(8)]
    assert {r.status_code for r in replays} == {401}
    bearer = {"Authorization": f"Bearer {key['token']}"}
    for _ in range(8):  # every worker has the key in its cache now
        assert requests.get(stack.query + path, headers=bearer, timeout=10).status_code == 200
    revoked = run_ledger("keys", "revoke", key["key_id"], env={}, cwd=stack.checkout)
    assert revoked.returncode == 0, revoked.stderr
    since = time.monotonic()
    while any(requests.get(stack.query + path, headers=bearer, timeout=10).status_code == 200 for _ in range(8)):
        assert time.monotonic() - since < 5, "a worker still accepts the revoked key"
        time.sleep(0.2)
    listed = run_ledger("keys", "list", "--json", env={}, cwd=stack.checkout)
    assert json.loads(next(line for line in listed.stdout.splitlines() if key["key_id"] in line))["revoked_at"]


def test_the_walking_skeleton_scenario(stack: Stack) -> None:
    a, b = unique("A"), unique("B")
    for account in (a, b):
        assert stack.post("/v1/accounts", {"id": account, "asset": "USD/2"}).status_code == 201
    assert stack.post("/v1/deposits", {"id": unique("d"), "account": a, "amount": "100.00"}).status_code == 201
    low = {"id": "low", "account": a, "when": "below", "amount": "80.00"}
    assert stack.post("/v1/monitors", low).json()["state"] == "clear"
    transfer = stack.post(
        "/v1/transfers", {"id": unique("t"), "debit_account": a, "credit_account": b, "amount": "30.00"}
    )
    assert transfer.status_code == 201
    position = transfer.json()["position"]

    def balance(account: str) -> str:
        reply = stack.http.get(f"{stack.query}/v1/accounts/{account}", params={"min_position": position}, timeout=30)
        assert reply.status_code == 200, reply.text
        return str(reply.json()["balance"]["available"])

    assert (balance(a), balance(b)) == ("70.00", "30.00")
    monitors = stack.http.get(f"{stack.query}/v1/accounts/{a}", timeout=10).json()["monitors"]
    assert [(m["id"], m["amount"], m["state"]) for m in monitors] == [("low", "80.00", "triggered")]
    entries = stack.http.get(f"{stack.query}/v1/accounts/{a}/entries", timeout=10).json()["entries"]
    assert [(e["side"], e["amount"]) for e in entries] == [("debit", "30.00"), ("credit", "100.00")]
    assert entries[0]["transfer_id"] == transfer.json()["id"]


def test_a_payout_run_from_the_shell_runs_to_completion(stack: Stack, tmp_path: Path) -> None:
    """`ledger payouts run FILE --start --follow`, run beside the stack as an operator would:
    a bad file is refused with its rows named, the corrected one is paid row by row."""
    payer = unique("payer")
    assert stack.post("/v1/accounts", {"id": payer, "asset": "XLM/7"}).status_code == 201
    assert stack.post("/v1/deposits", {"id": unique("d"), "account": payer, "amount": "100"}).status_code == 201
    payees = [stack.payee() for _ in range(5)]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"id,account,amount,destination\n1,{payer},1,GABC\n2,nobody,1,{payees[0]}\n")
    refused = run_ledger("payouts", "run", str(bad), "--id", unique("run"), env=stack.cli_env(), cwd=stack.checkout)
    assert refused.returncode == 2, refused.stderr
    assert "row 1 destination: invalid_destination" in refused.stderr
    assert "row 2 account: account_not_found" in refused.stderr
    good = tmp_path / "run.json"
    run_id = unique("run")
    rows = [{"id": f"r{n}", "account": payer, "amount": "1.5", "destination": p} for n, p in enumerate(payees)]
    good.write_text(json.dumps({"id": run_id, "rows": rows}))
    done = run_ledger("payouts", "run", str(good), "--start", "--follow", env=stack.cli_env(), cwd=stack.checkout)
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout.splitlines()[-1])
    assert (final["state"], final["counts"]["success"], final["amounts"]["success"]) == (
        "completed",
        5,
        {"XLM/7": "7.5000000"},
    )
    assert "5/5" in done.stderr  # the progress bar reached the end
    paid = requests.get(f"{stack.state['urls']['horizon_url']}/_sim/state", timeout=10).json()["payments"]
    assert sorted(p["to"] for p in paid if p["to"] in payees) == sorted(payees)


def test_a_session_goes_on_after_uploading_a_file_over_64_kib(stack: Stack) -> None:
    """Such a body is read by the app, not buffered by the worker, and its connection closes
    after the answer; the answer must say so, or the client sends its next request into a
    closed socket (the benchmark's start after its upload failed that way)."""
    rows = [f"{n},nobody-{n:05d},1,GABC,memo" for n in range(3000)]
    body = "\n".join(["id,account,amount,destination,memo", *rows]).encode()
    assert len(body) > 64 * 1024
    session = stack.authorized_session()
    refused = session.post(
        f"{stack.command}/v1/payout-runs",
        params={"id": unique("run")},
        data=body,
        headers={"Content-Type": "text/csv"},
        timeout=60,
    )
    assert (refused.status_code, refused.headers.get("Connection")) == (422, "close")
    assert len(refused.json()["rows"]) == MAX_REPORTED  # the cap: 3,000 rows with two problems each
    assert session.get(f"{stack.command}/healthz", timeout=10).status_code == 200  # the same session, again


def test_retries_conflicts_and_overdrafts_over_http(stack: Stack) -> None:
    a, b = unique("A"), unique("B")
    for account in (a, b):
        stack.post("/v1/accounts", {"id": account, "asset": "USD/2"})
    stack.post("/v1/deposits", {"id": unique("d"), "account": a, "amount": "50.00"})
    body = {"id": unique("t"), "debit_account": a, "credit_account": b, "amount": "20.00"}
    first = stack.post("/v1/transfers", body)
    again = stack.post("/v1/transfers", body)
    assert (again.status_code, again.json()) == (201, first.json())
    assert stack.post("/v1/transfers", body | {"amount": "21.00"}).status_code == 409
    # The sealer runs beside it (every 2 s here): its seals are not the refused transfer's.
    not_seals = "SELECT count(*) FROM ledger_events WHERE originator_id <> %s"
    with psycopg.connect(str(stack.settings().database_url)) as conn:
        before = conn.execute(not_seals, (SEAL_STREAM,)).fetchone()
        too_much = stack.post("/v1/transfers", body | {"id": unique("t"), "amount": "30.01"})
        after = conn.execute(not_seals, (SEAL_STREAM,)).fetchone()
    assert too_much.status_code == 422
    assert too_much.json()["code"] == "insufficient_funds"
    assert before == after


def scrape(url: str, token: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One /metrics page, as Prometheus reads it: sample name and labels to value."""
    page = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain"), page.text[:500]
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(page.text)
        for sample in family.samples
    }


def test_every_service_has_metrics_that_move_under_load(stack: Stack) -> None:
    made = stack.post("/v1/keys", {"name": "prometheus", "scopes": ["metrics"]})
    assert made.status_code == 201
    token = made.json()["token"]
    urls = stack.state["urls"]
    workers = {name: urls[f"{name}_metrics"] for name in ("relay", "projector", "expirer", "sealer", "chain")}
    assert (
        requests.get(f"{stack.query}/v1/status", headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code
        == 403
    )
    assert requests.get(f"{stack.command}/metrics", timeout=10).status_code == 401
    before = scrape(stack.command, token)
    relay_before = scrape(workers["relay"], token)[("ledger_relay_position", ())]

    a, b = unique("A"), unique("B")
    for account in (a, b):
        stack.post("/v1/accounts", {"id": account, "asset": "USD/2"})
    stack.post("/v1/deposits", {"id": unique("d"), "account": a, "amount": "10.00"})
    bodies = [{"id": unique("t"), "debit_account": a, "credit_account": b, "amount": "0.10"} for _ in range(30)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda body: stack.post("/v1/transfers", body).status_code, bodies))
    assert answers == [201] * 30
    assert [stack.post("/v1/transfers", body).status_code for body in bodies[:3]] == [201] * 3  # replays
    broke = {"id": unique("t"), "debit_account": a, "credit_account": b, "amount": "99.00"}
    assert stack.post("/v1/transfers", broke).status_code == 422

    after = scrape(stack.command, token)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved("ledger_commands_total", command="transfer", outcome="ok") == 30
    assert moved("ledger_commands_total", command="transfer", outcome="replayed") == 3
    assert moved("ledger_commands_total", command="transfer", outcome="insufficient_funds") == 1
    assert moved("ledger_http_requests_total", api="command", route="/v1/transfers", method="POST", status="201") == 33
    assert moved("ledger_http_request_seconds_count", api="command", route="/v1/transfers", method="POST") == 34
    assert moved("ledger_group_commit_size_count") >= 1 and moved("ledger_group_commit_size_sum") >= 30

    def relay_moved() -> bool:
        return scrape(workers["relay"], token)[("ledger_relay_position", ())] > relay_before

    wait_for(relay_moved, 30, "the relay's position to move")
    head = Books(event_store_env(stack.settings()))
    try:
        position = head.head_position()
    finally:
        head.close()
    wait_for(
        lambda: scrape(workers["projector"], token)[("ledger_projector_watermark", ())] >= position,
        60,
        "the projector's watermark to reach the head",
    )
    assert ("ledger_seal_age_seconds", ()) in scrape(workers["sealer"], token)
    chain_before = scrape(workers["chain"], token)
    assert chain_before[("ledger_payouts_stuck", ())] == 0
    payer = unique("P")
    stack.post("/v1/accounts", {"id": payer, "asset": "XLM/7"})
    stack.post("/v1/deposits", {"id": unique("d"), "account": payer, "amount": "5"})
    paid = stack.post(
        "/v1/payouts", {"id": unique("p"), "account": payer, "amount": "1.5", "destination": stack.payee()}
    )
    assert paid.status_code == 201, paid.text

    def confirmed() -> float:
        return scrape(workers["chain"], token).get(("ledger_payouts_total", (("state", "confirmed"),)), 0.0)

    wait_for(
        lambda: confirmed() > chain_before.get(("ledger_payouts_total", (("state", "confirmed"),)), 0.0),
        60,
        "a payout confirmed",
    )
    assert scrape(workers["chain"], token)[("ledger_payouts_total", (("state", "submitted"),))] >= 1
    for url in [stack.command, stack.query, *workers.values()]:
        ready = requests.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 200 and set(ready.json()["checks"].values()) == {"ok"}, (url, ready.text)

    # A stopped broker (frozen, so the supervisor does not restart it) makes the services
    # that need it not ready, and they say which dependency is down.
    broker = stack.state["children"]["kafka"]
    os.kill(broker, signal.SIGSTOP)
    time.sleep(1.2)  # past the second for which a readiness answer serves
    try:
        answers = {
            name: requests.get(f"{workers[name]}/readyz", timeout=15) for name in ("relay", "projector", "sealer")
        }
    finally:
        os.kill(broker, signal.SIGCONT)
    for name in ("relay", "projector"):
        problem = answers[name].json()
        assert answers[name].status_code == 503 and problem["code"] == "not_ready", answers[name].text
        assert problem["checks"]["kafka"] != "ok" and "kafka" in problem["detail"]
        assert problem["checks"]["postgres"] == "ok"
    assert answers["sealer"].status_code == 200  # it needs no broker
    wait_for(lambda: requests.get(f"{workers['relay']}/readyz", timeout=15).status_code == 200, 30, "the broker back")


def test_the_expirer_that_ledger_up_runs_releases_a_timed_out_hold(stack: Stack) -> None:
    a, b = unique("A"), unique("B")
    for account in (a, b):
        stack.post("/v1/accounts", {"id": account, "asset": "USD/2"})
    stack.post("/v1/deposits", {"id": unique("d"), "account": a, "amount": "10.00"})
    hold = stack.post(
        "/v1/transfers",
        {
            "id": unique("h"),
            "debit_account": a,
            "credit_account": b,
            "amount": "4.00",
            "pending": True,
            "timeout_seconds": 1,
        },
    ).json()

    def status() -> str:
        reply = stack.http.get(
            f"{stack.query}/v1/transfers/{hold['id']}", params={"min_position": hold["position"]}, timeout=30
        )
        return str(reply.json()["status"])

    wait_for(lambda: status() == "expired", 30, "the hold to expire")
    refused = stack.post(f"/v1/transfers/{hold['id']}/post", {})
    assert (refused.status_code, refused.json()["code"]) == (409, "transfer_expired")  # as before it expired


def test_a_broker_that_restarts_empty_loses_nothing(stack: Stack) -> None:
    """The embedded broker keeps everything in memory: killed, it comes back empty."""
    accounts = [unique("K") for _ in range(4)]
    for account in accounts:
        stack.post("/v1/accounts", {"id": account, "asset": "EUR/2"})
        stack.post("/v1/deposits", {"id": unique("d"), "account": account, "amount": "100.00"})
    stop = threading.Event()
    failures: list[str] = []
    sent: list[int] = []

    def load() -> None:
        session = stack.authorized_session()
        i = 0
        while not stop.is_set():
            body = {
                "id": unique("t"),
                "debit_account": accounts[i % 4],
                "credit_account": accounts[(i + 1) % 4],
                "amount": "0.01",
            }
            reply = session.post(stack.command + "/v1/transfers", json=body, timeout=30)
            if reply.status_code not in (201, 422):
                failures.append(f"{reply.status_code}: {reply.text}")
            sent.append(reply.status_code)
            i += 1

    writer = threading.Thread(target=load)
    writer.start()
    try:
        time.sleep(1.5)
        broker = stack.state["children"]["kafka"]
        os.kill(broker, signal.SIGKILL)
        wait_for(lambda: stack.state["children"].get("kafka") not in (None, broker), 60, "the broker to restart")
        time.sleep(3)
    finally:
        stop.set()
        writer.join()
    assert failures == []
    assert sent.count(201) > 10

    assert stack.read_model_differences(accounts[0], timeout=120) == []
    with psycopg.connect(str(stack.settings().database_url)) as conn:
        recorded = {row[0] for row in conn.execute("SELECT notification_id FROM ledger_events")}
    # Every event is on the new broker at least once: the relay published everything again.
    consumer = Consumer(kafka.consumer_config(stack.state["urls"]["kafka_bootstrap"], unique("check")))
    consumer.assign([TopicPartition("ledger.events", p, 0) for p in range(4)])
    seen: set[int] = set()
    deadline = time.monotonic() + 60
    while not recorded <= seen:
        assert time.monotonic() < deadline, f"{len(recorded - seen)} events never reached the new broker"
        for message in consumer.consume(1000, 0.5):
            headers = dict(message.headers() or [])
            if headers.get("ce_type") != b"ledger.checkpoint.v1":
                seen.add(int(headers["ce_position"]))
    consumer.close()
    assert "server died; restarting it" in stack.log()


def test_the_example_fraud_service_freezes_a_fast_spender(stack: Stack) -> None:
    fast, slow, sink = unique("fast"), unique("slow"), unique("sink")
    for account in (fast, slow, sink):
        stack.post("/v1/accounts", {"id": account, "asset": "USD/2"})
    for account in (fast, slow):
        stack.post("/v1/deposits", {"id": unique("d"), "account": account, "amount": "100.00"})
    example = Path(__file__).resolve().parents[2] / "examples" / "fraud_velocity.py"
    made = run_ledger(
        "keys", "create", "--name", "fraud", "--scope", "admin", "--signed-only", env={}, cwd=stack.checkout
    )
    assert made.returncode == 0, made.stderr
    key_file = stack.data_dir / "fraud-key.json"
    key_file.write_text(made.stdout)
    service = subprocess.Popen(
        [
            sys.executable,
            str(example),
            "--bootstrap",
            stack.state["urls"]["kafka_bootstrap"],
            "--command-api",
            stack.command,
            "--group",
            unique("fraud"),
            "--key-file",
            str(key_file),
            "--max-per-minute",
            "5",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for n in range(6):
            assert (
                stack.post(
                    "/v1/transfers",
                    {"id": unique("t"), "debit_account": fast, "credit_account": sink, "amount": "1.00"},
                ).status_code
                == 201
            )
        for n in range(3):
            stack.post(
                "/v1/transfers", {"id": unique("t"), "debit_account": slow, "credit_account": sink, "amount": "1.00"}
            )

        def status(account: str) -> str:
            return str(stack.http.get(f"{stack.query}/v1/accounts/{account}", timeout=10).json()["status"])

        wait_for(lambda: status(fast) == "frozen", 60, "the fraud service to freeze the fast spender")
        assert status(slow) == "open"
        refused = stack.post(
            "/v1/transfers", {"id": unique("t"), "debit_account": fast, "credit_account": sink, "amount": "1.00"}
        )
        assert refused.json()["code"] == "account_not_open"
    finally:
        service.terminate()
        service.wait(timeout=30)


def test_killing_the_relay_and_projector_loses_and_doubles_nothing(stack: Stack) -> None:
    accounts = [unique("L") for _ in range(6)]
    for account in accounts:
        stack.post("/v1/accounts", {"id": account, "asset": "EUR/2"})
        stack.post("/v1/deposits", {"id": unique("d"), "account": account, "amount": "1000.00"})
    stop = threading.Event()
    sent: list[int] = []
    failures: list[str] = []  # asserting inside a thread would be lost

    def load(offset: int) -> None:
        session = stack.authorized_session()
        i = offset
        while not stop.is_set():
            src, dst = accounts[i % 6], accounts[(i + 1 + offset) % 6]
            reply = session.post(
                stack.command + "/v1/transfers",
                json={"id": unique("t"), "debit_account": src, "credit_account": dst, "amount": "0.01"},
                timeout=30,
            )
            if reply.status_code not in (201, 422):
                failures.append(f"{reply.status_code}: {reply.text}")
            sent.append(reply.status_code)
            i += 1

    writers = [threading.Thread(target=load, args=(n,)) for n in range(2)]
    for writer in writers:
        writer.start()
    try:
        for victim in ("relay", "projector"):
            time.sleep(1.5)
            pid = stack.state["children"][victim]
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda v=victim, p=pid: stack.state["children"].get(v) not in (None, p), 30, f"{victim} restart")
        time.sleep(1.5)
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    assert failures == []
    assert sent.count(201) > 20

    assert stack.read_model_differences(accounts[0], timeout=60) == []
    log = stack.log()
    assert '"service": "relay"' in log and '"service": "projector"' in log
    assert log.count("service died; restarting") >= 2


def test_killing_the_command_api_in_the_middle_of_group_commits_loses_and_halves_nothing(stack: Stack) -> None:
    """Eight clients keep the writer saving groups while its process is SIGKILLed twice
    (gunicorn starts a new one). Every answered transfer is in the store exactly once;
    an unanswered one is either whole or absent; no money appears or disappears. The
    auditor's replay (a test further down) then checks the whole store."""
    accounts = [unique("G") for _ in range(4)]
    for account in accounts:
        stack.post("/v1/accounts", {"id": account, "asset": "EUR/2"})
        stack.post("/v1/deposits", {"id": unique("d"), "account": account, "amount": "1000.00"})
    stop = threading.Event()
    answered: dict[str, int] = {}
    unanswered: list[str] = []
    failures: list[str] = []

    def load(offset: int) -> None:
        session = stack.authorized_session()
        i = offset
        while not stop.is_set():
            transfer_id = unique("g")
            body = {
                "id": transfer_id,
                "debit_account": accounts[i % 4],
                "credit_account": accounts[(i + 1) % 4],
                "amount": "0.01",
            }
            i += 1
            try:
                reply = session.post(stack.command + "/v1/transfers", json=body, timeout=30)
            except requests.RequestException:
                unanswered.append(transfer_id)
                time.sleep(0.05)
                continue
            if reply.status_code == 201:
                answered[transfer_id] = reply.json()["position"]
            elif reply.status_code >= 500:
                unanswered.append(transfer_id)
            else:
                failures.append(f"{reply.status_code}: {reply.text}")

    writers = [threading.Thread(target=load, args=(n,)) for n in range(8)]
    for writer in writers:
        writer.start()
    try:
        for _ in range(2):
            time.sleep(1.5)
            before = len(answered)
            for worker in psutil.Process(stack.state["children"]["command-api"]).children():
                os.kill(worker.pid, signal.SIGKILL)
            wait_for(lambda b=before: len(answered) > b + 20, 60, "the command API to answer again")
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    assert failures == []
    assert len(answered) > 100 and unanswered

    books = Books(event_store_env(stack.settings()))
    try:
        sides: dict[str, int] = {}  # transfer id -> account events naming it
        balance = 0
        for account in accounts:
            for event in books.events.get(account_uuid(account)):
                transfer_id = getattr(event, "transfer_id", None)
                if transfer_id is not None:
                    sides[transfer_id] = sides.get(transfer_id, 0) + 1
            balance += books.account(account).available
        assert balance == 4 * 100_000  # what moved between the four stayed among them
        with psycopg.connect(stack.settings().require("database_url")) as conn:
            stored = dict(
                conn.execute(
                    "SELECT originator_id, notification_id FROM ledger_events WHERE originator_id = ANY(%s)",
                    ([transfer_uuid(t) for t in answered],),
                ).fetchall()
            )
        for transfer_id, position in answered.items():
            assert stored.get(transfer_uuid(transfer_id)) == position, transfer_id  # once, where it was answered
            assert sides.get(transfer_id) == 2, transfer_id
        for transfer_id in unanswered:
            whole = books.transfer_record(transfer_id) is not None
            assert sides.get(transfer_id, 0) == (2 if whole else 0), transfer_id
    finally:
        books.close()


def test_a_rebuild_against_the_running_stack(stack: Stack) -> None:
    a, b = unique("A"), unique("B")
    for account in (a, b):
        stack.post("/v1/accounts", {"id": account, "asset": "USD/2"})
    stack.post("/v1/deposits", {"id": unique("d"), "account": a, "amount": "5.00"})
    before = stack.http.get(f"{stack.query}/v1/status", timeout=10).json()
    env = stack.cli_env()
    rebuilt = run_ledger("projections", "rebuild", env=env, cwd=stack.checkout)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert "generation 2 is active" in rebuilt.stdout
    paid = stack.post("/v1/transfers", {"id": unique("t"), "debit_account": a, "credit_account": b, "amount": "2.00"})
    reply = stack.http.get(
        f"{stack.query}/v1/accounts/{b}", params={"min_position": paid.json()["position"]}, timeout=30
    )
    assert (reply.status_code, reply.json()["balance"]["available"]) == (200, "2.00")
    assert (
        stack.http.get(f"{stack.query}/v1/status", timeout=10).json()["read_model_position"]
        >= before["read_model_position"]
    )
    verified = run_ledger("projections", "verify", env=env, cwd=stack.checkout)
    assert verified.returncode == 0, verified.stdout[-2000:]


def test_the_auditor_finds_nothing_wrong_with_the_running_stack(stack: Stack, tmp_path: Path) -> None:
    """After all of the above (a broker that restarted empty, killed workers, a rebuild),
    the replay finds nothing, agrees with the read model, and checks the sealer's seals."""
    a = unique("A")
    stack.post("/v1/accounts", {"id": a, "asset": "USD/2"})
    stack.post("/v1/deposits", {"id": unique("d"), "account": a, "amount": "1.00"})
    env = stack.cli_env()
    report_path = tmp_path / "report.json"
    deadline = time.monotonic() + 30
    while True:  # the sealer seals every 2 s here; the deposit is in the next seal
        done = run_ledger("audit", "verify", "--report", str(report_path), env=env, cwd=stack.checkout)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        report = json.loads(report_path.read_text())
        if report["seals"]["checked"] >= 1 and report["seals"]["events_after_last_seal"] == 0:
            break
        assert time.monotonic() < deadline, f"no seal over the last events: {report['seals']}"
        time.sleep(1)
    assert report["read_model_compared"] and report["findings"] == []
    assert report["events"] > 0 and report["totals"]["USD/2"] == {"posted": "0.00", "pending": "0.00"}


CONTRACT_CONFIG = Path(__file__).with_name("schemathesis.toml")


def schemathesis(url: str, token: str, report: Path, *select: str) -> subprocess.CompletedProcess[str]:
    """The schemathesis CLI, as a user runs it (README: the contract), kept short for CI."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(CONTRACT_CONFIG),
        "run",
        f"{url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        os.environ.get("LEDGER_CONTRACT_EXAMPLES", "25"),
        "--seed",
        "13",
        "--workers",
        "1",  # Python 3.11's ast is not thread-safe, and hypothesis parses lambdas with it
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        *select,
    ]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=600, cwd=report.parent)


def test_both_apis_keep_their_published_contract(stack: Stack, tmp_path: Path) -> None:
    """Schemathesis generates requests from each API's /openapi.json, valid and not, and
    finds no 5xx, no answer outside the schema and no accepted request that the schema
    calls invalid. It runs last but one: it sets fee rules and opens accounts at random.
    It learns key ids from GET /v1/keys and would revoke its own key, so the revocation
    route gets its own run, with a key of its own."""
    made = [stack.post("/v1/keys", {"name": f"contract {i}", "scopes": ["admin"]}) for i in range(2)]
    assert [m.status_code for m in made] == [201, 201]
    token, revoker = (m.json()["token"] for m in made)
    revoke = "/v1/keys/{key_id}/revoke"
    runs = [
        (stack.command, token, ("--exclude-path", revoke)),
        (stack.command, revoker, ("--include-path", revoke)),
        (stack.query, token, ()),
    ]
    for number, (url, key, select) in enumerate(runs):
        done = schemathesis(url, key, tmp_path / f"contract-{number}.xml", *select)
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
        tested = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
        assert tested and int(tested.group(1)) >= 20 and tested.group(1) == tested.group(2), done.stdout[-3000:]
        print(f"\nschemathesis {url} {' '.join(select)}: {tested.group(0)}")
    verified = run_ledger("audit", "verify", env=stack.cli_env(), cwd=stack.checkout)
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-2000:]


def test_stopping_leaves_no_child_process_running(stack: Stack) -> None:
    descendants = stack.descendants()
    assert {p.name() for p in descendants} >= {"postgres"}
    assert len(descendants) >= 7
    assert stack.stop() == 0
    alive = [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert not (stack.data_dir / "run" / "state.json").exists()
