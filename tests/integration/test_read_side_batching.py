"""The read side's batching, on the real broker and MongoDB-protocol server.

The relay publishes in few, large rounds and stores its position only now and then; the
projector writes each collection once per batch and remembers what it wrote. These tests
pin what must not change with that: a crash between publishing and storing the position
republishes, nothing is skipped, and the projector applies everything exactly once; a
batch costs one write per collection and no reads once the documents are known (counted
with pymongo's command monitoring against the real server).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import psycopg
import pymongo
import pytest
from confluent_kafka import TopicPartition
from pymongo import monitoring

from commands.application import Books
from commands.messages import Deposit, OpenAccount, TransferFunds
from contracts import readmodel as schema
from contracts.events import CHECKPOINT, from_message
from contracts.stored_events import StoredEventEncoder
from contracts.validation import decode_headers
from projectors.projector import Projector
from projectors.relay import Relay, RelayState
from projectors.replay import differences
from projectors.views import ReadModelWriter
from queries import readmodel
from tests.conftest import Urls, unique
from tests.integration.test_pipeline import project_until, some_activity


def stored_position(servers: Urls, topic: str) -> int:
    with psycopg.connect(servers.database_url) as conn:
        row = conn.execute("SELECT position FROM relay_state WHERE topic = %s", (topic,)).fetchone()
    return int(row[0]) if row else 0


def relay_for(books: Books, servers: Urls, topic: str, **options: Any) -> Relay:
    relay = Relay(
        books,
        RelayState(servers.database_url, topic),
        servers.database_url,
        servers.producer(),
        servers.topic_watch(topic, 3),
        **options,
    )
    relay.start()
    return relay


def test_a_crash_between_publishing_and_storing_the_position_republishes_and_applies_once(
    books: Books, servers: Urls, mongo_db: Any
) -> None:
    topic = unique("events")
    a, b = some_activity(books, transfers=1)
    relay = relay_for(books, servers, topic, save_interval=3600)
    while relay.publish_batch():  # the whole store so far (the first round is stored)
        pass
    relay.save_position()
    saved = stored_position(servers, topic)
    assert saved == relay.position == books.head_position()

    # More rounds, confirmed by the broker but not stored: a newly opened account among them.
    late = unique("C")
    books.open_account(OpenAccount(late, "USD/2"))
    for _ in range(3):
        books.transfer(TransferFunds(unique("t"), a, late, "1.00"))
    assert relay.publish_batch() > 0
    assert relay.position == books.head_position()
    assert stored_position(servers, topic) == saved  # not stored yet: the crash comes now

    projector = Projector(mongo_db, servers.consumer(), servers.topic_watch(topic, 3), store_head=books.head_position)
    projector.start()
    project_until(projector, mongo_db, relay.position)
    entries = mongo_db[schema.ENTRIES].count_documents({})

    # After the crash: more writes, a new relay from the stored position, and a new projector
    # (nothing remembered) from its stored offsets. The republished round (creating `late`
    # again) and the new writes arrive together.
    books.transfer(TransferFunds(unique("t"), a, late, "2.00"))
    books.transfer(TransferFunds(unique("t"), late, b, "0.50"))
    again = relay_for(books, servers, topic, save_interval=3600)
    assert again.position == saved
    while again.publish_batch():
        pass
    again.save_position()
    assert stored_position(servers, topic) == books.head_position()
    restarted = Projector(mongo_db, servers.consumer(), servers.topic_watch(topic, 3), store_head=books.head_position)
    restarted.start()
    project_until(restarted, mongo_db, books.head_position())

    assert differences(books, mongo_db) == []
    assert mongo_db[schema.ENTRIES].count_documents({}) == entries + 4  # two transfers, two sides each
    assert readmodel.account(mongo_db, late)["balance"]["available"] == "4.50"
    assert [e["amount"] for e in readmodel.entries(mongo_db, late, 10, None)["entries"]] == [
        "0.50",
        "2.00",
        "1.00",
        "1.00",
        "1.00",
    ]


def test_rounds_gather_commits_and_the_position_is_stored_when_the_relay_stops(books: Books, servers: Urls) -> None:
    topic = unique("events")
    a, b = some_activity(books, transfers=0)
    relay = relay_for(books, servers, topic, interval=0.25, save_interval=3600)
    stop = threading.Event()
    ready = threading.Event()
    runner = threading.Thread(target=relay.run, args=(stop, ready.set))
    runner.start()
    try:
        assert ready.wait(30)
        caught_up = books.head_position()  # what the tests before left: published in full rounds
        deadline = time.monotonic() + 30
        while relay.position < caught_up:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        commits = 40
        began = time.monotonic()
        for _ in range(commits):
            books.transfer(TransferFunds(unique("t"), a, b, "0.01"))
        took = time.monotonic() - began
        deadline = time.monotonic() + 10
        while relay.position < books.head_position():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()
    assert stored_position(servers, topic) == books.head_position()  # stored on the way out

    consumer = servers.consumer()
    consumer.assign([TopicPartition(topic, 0, 0)])
    rounds: set[int] = set()
    deadline = time.monotonic() + 20
    while max(rounds, default=0) < relay.position:
        assert time.monotonic() < deadline, rounds
        for message in consumer.consume(500, 0.5):
            headers = decode_headers(message)
            if headers.get("ce_type") == CHECKPOINT and int(headers["ce_position"]) > caught_up:
                rounds.add(int(headers["ce_position"]))
    consumer.close()
    # Every round ends with a checkpoint on every partition: one per round here.
    assert len(rounds) <= took / 0.25 + 3, (len(rounds), took)
    assert len(rounds) < commits / 2, (len(rounds), took)


class CommandLog(monitoring.CommandListener):
    """Every command the client sends, as (command name, collection)."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        self.commands.append((event.command_name, target if isinstance(target, str) else ""))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def monitored_db(servers: Urls) -> Any:
    log = CommandLog()
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(servers.mongo_url, event_listeners=[log])
    yield client[unique("t").replace("-", "_")], log
    client.close()


def test_a_batch_costs_one_write_per_collection_and_no_reads_once_known(
    books: Books, servers: Urls, monitored_db: tuple[Any, CommandLog]
) -> None:
    db, log = monitored_db
    topic = unique("events")
    accounts = [unique("A") for _ in range(4)]
    for account in accounts:
        books.open_account(OpenAccount(account, "USD/2"))
        books.deposit(Deposit(unique("d"), account, "100.00"))
    relay = relay_for(books, servers, topic)
    while relay.publish_batch():
        pass
    projector = Projector(db, servers.consumer(), servers.topic_watch(topic, 3), store_head=books.head_position)
    projector.start()
    project_until(projector, db, books.head_position())

    for n in range(20):  # one round of new transfers between known accounts
        books.transfer(TransferFunds(unique("t"), accounts[n % 4], accounts[(n + 1) % 4], "1.00"))
    assert relay.publish_batch() > 0
    batches: list[Counter[tuple[str, str]]] = []
    deadline = time.monotonic() + 30
    while schema.watermark(db) < relay.position:
        assert time.monotonic() < deadline
        log.commands.clear()
        if projector.process_batch(0.5):
            batches.append(Counter(command for command in log.commands if command[1] != schema.PROJECTOR_STATE))
            batches[-1][("progress", "")] = sum(1 for c in log.commands if c[1] == schema.PROJECTOR_STATE)
    assert differences(books, db) == []
    applied = [batch for batch in batches if batch[("insert", schema.ENTRIES)]]
    assert applied, batches
    for batch in applied:
        assert batch[("insert", schema.ENTRIES)] == 1
        assert batch[("insert", schema.TRANSFERS)] == 1
        assert batch[("update", schema.ACCOUNTS)] == 1
        assert batch[("find", schema.ACCOUNTS)] == 0  # remembered from the last batch
        assert batch[("find", schema.TRANSFERS)] == 0  # new transfers: nothing to read
        assert batch[("progress", "")] == 1  # offsets, checkpoints and watermark: one round trip
        assert sum(batch.values()) == 4, batch


def test_a_writer_that_assumed_a_stream_new_reads_it_when_it_was_not(
    books: Books, servers: Urls, monitored_db: tuple[Any, CommandLog]
) -> None:
    """A redelivered creating event followed by new events, to a writer that remembers
    nothing (a restarted projector): the new events apply on top of the stored document."""
    db, log = monitored_db
    a, b = unique("A"), unique("B")
    start = books.head_position()
    books.open_account(OpenAccount(a, "USD/2"))
    books.open_account(OpenAccount(b, "USD/2"))
    books.deposit(Deposit(unique("d"), a, "10.00"))
    first = books.head_position()
    books.transfer(TransferFunds(unique("t"), a, b, "3.00"))
    encoder = StoredEventEncoder(books)

    # (The deposit also moves the issuance account, which this database has never seen:
    # that event is skipped, as one ahead of the read model.)
    notifications = books.recorder.select_notifications(start=start, limit=1000, inclusive_of_start=False)
    everything = [from_message(m.headers, m.value) for m in map(encoder.encode, notifications)]
    up_to_first = [e for e in everything if e.position <= first]
    ReadModelWriter(db).apply_batch(up_to_first)
    assert readmodel.account(db, a)["balance"]["available"] == "10.00"

    log.commands.clear()
    ReadModelWriter(db).apply_batch(everything)  # the opening events again, then the transfer
    assert readmodel.account(db, a)["balance"]["available"] == "7.00"
    assert readmodel.account(db, b)["balance"]["available"] == "3.00"
    assert [e["amount"] for e in readmodel.entries(db, a, 10, None)["entries"]] == ["3.00", "10.00"]
    assert ("find", schema.ACCOUNTS) in log.commands  # it went back and read them
