"""The `ledger` CLI's read-model check, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from commands.application import Books
from contracts import readmodel as schema
from projectors.relay import Relay, RelayState
from tests.conftest import Urls, run_ledger
from tests.integration.forged import Forged, event_headers, produce
from tests.integration.test_pipeline import project_everything, some_activity


def run_verify(servers: Urls, db_name: str) -> subprocess.CompletedProcess[str]:
    env = {
        "LEDGER_DATABASE_URL": servers.database_url,
        "LEDGER_MONGO_URL": servers.mongo_url,
        "LEDGER_MONGO_DB": db_name,
    }
    return run_ledger("projections", "verify", env=env, timeout=120)


def test_verify_passes_on_a_faithful_read_model_and_names_an_edited_one(
    books: Books, servers: Urls, mongo_db: Any
) -> None:
    a, _ = some_activity(books, transfers=2)
    project_everything(books, servers, mongo_db)
    clean = run_verify(servers, mongo_db.name)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "no differences" in clean.stdout
    mongo_db[schema.ACCOUNTS].update_one({"_id": a}, {"$set": {"posted_credits": "1"}})
    edited = run_verify(servers, mongo_db.name)
    assert edited.returncode == 1
    assert f"DIFF account {a}: the read model shows posted_credits 1 (replay: " in edited.stdout
    assert "DIFF asset USD/2: posted debits" in edited.stdout  # and the books no longer balance


def test_tail_prints_the_stream_as_json_lines(books: Books, servers: Urls, event_count: Any) -> None:
    topic = f"tail-{time.monotonic_ns()}"
    a, _ = some_activity(books, transfers=1)
    relay = Relay(
        books,
        RelayState(servers.database_url, topic),
        servers.database_url,
        servers.producer(),
        servers.topic_watch(topic, 2),
    )
    relay.start()
    while relay.publish_batch():
        pass
    # Anyone can produce to the topic: malformed messages are skipped, not a crash.
    produce(
        servers.kafka_bootstrap,
        topic,
        [
            Forged(event_headers("ledger.account.debited.v1", a, 9, 1), b"{not json"),
            Forged(event_headers("ledger.account.debited.v1", a, 9, 1, ce_sequence="nine"), b"{}", 1),
            Forged(event_headers("ledger.account.debited.v1", a, 9, 1, ce_subject=b"\xff"), b"{}", 1),
        ],
    )
    env = {"LEDGER_KAFKA_BOOTSTRAP": servers.kafka_bootstrap, "LEDGER_KAFKA_TOPIC": topic}
    tailed = run_ledger("tail", "--json", "--from-beginning", "--group", topic, "--idle", "10", env=env, timeout=120)
    assert tailed.returncode == 0, tailed.stderr
    assert tailed.stderr.count("skipped a malformed message") == 3, tailed.stderr
    events = [json.loads(line) for line in tailed.stdout.splitlines()]
    assert len(events) == event_count()  # every event in the store, once; no checkpoints
    mine = [e for e in events if e["subject"] == a]
    assert [e["type"] for e in mine] == [
        "ledger.account.opened.v1",
        "ledger.account.credited.v1",
        "ledger.account.debited.v1",
    ]
    assert [e["sequence"] for e in mine] == [1, 2, 3]
