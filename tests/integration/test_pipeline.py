"""Relay and projector in-process, on the real broker and MongoDB-protocol server.

Each test uses its own topic (so its own relay position) and its own database.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from confluent_kafka import TopicPartition

from audit.sealer import Sealer
from commands.application import Books
from commands.messages import (
    AccountAction,
    ChangePolicy,
    Deposit,
    ExecuteTransaction,
    OpenAccount,
    PostTransfer,
    ReverseTransfer,
    SetFeeRule,
    TransferFunds,
    VoidTransfer,
)
from contracts import readmodel as schema
from contracts.events import CHECKPOINT
from contracts.readmodel_check import compare_read_model
from contracts.validation import decode_headers
from ledger.errors import AccountNotFound
from ledger.fees import FeeTerms
from ledger.ids import fee_account_id
from projectors.projector import Projector
from projectors.relay import Relay, RelayState
from projectors.replay import differences, moved_since, replay
from queries import readmodel
from tests.conftest import Urls, unique


def some_activity(books: Books, transfers: int = 5) -> tuple[str, str]:
    a, b = unique("A"), unique("B")
    books.open_account(OpenAccount(a, "USD/2"))
    books.open_account(OpenAccount(b, "USD/2"))
    books.deposit(Deposit(unique("d"), a, "100.00"))
    for _ in range(transfers):
        books.transfer(TransferFunds(unique("t"), a, b, "1.25"))
    return a, b


def make_relay(books: Books, servers: Urls, topic: str) -> Relay:
    relay = Relay(
        books,
        RelayState(servers.database_url, topic),
        servers.database_url,
        servers.producer(),
        servers.topic_watch(topic, 3),
    )
    relay.start()
    return relay


def drain_relay(relay: Relay) -> None:
    """Publish everything, then store the position, as the relay does when it stops."""
    while relay.publish_batch():
        pass
    relay.save_position()


def project_until(projector: Projector, db: Any, position: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while schema.watermark(db) < position:
        assert time.monotonic() < deadline, f"watermark stuck at {schema.watermark(db)} < {position}"
        projector.process_batch(0.2)


def project_everything(books: Books, servers: Urls, mongo_db: Any) -> None:
    """Relay the whole event store to a fresh topic and project it until the head."""
    topic = unique("events")
    drain_relay(make_relay(books, servers, topic))
    projector = Projector(mongo_db, servers.consumer(), servers.topic_watch(topic, 3), store_head=books.head_position)
    projector.start()
    project_until(projector, mongo_db, books.head_position())


def test_read_models_equal_a_replay_of_the_event_store(books: Books, servers: Urls, mongo_db: Any) -> None:
    a, _ = some_activity(books)
    project_everything(books, servers, mongo_db)
    assert differences(books, mongo_db) == []
    head = books.head_position()
    status = schema.status(mongo_db)
    assert (status["event_store_head"], status["relay_position"], status["lag"]) == (head, head, 0)
    assert status["read_model_position"] == head
    assert readmodel.account(mongo_db, a)["balance"]["available"] == "93.75"
    assert readmodel.account(mongo_db, a)["system"] is False
    page = readmodel.entries(mongo_db, a, 2, None)
    assert [e["amount"] for e in page["entries"]] == ["1.25", "1.25"]
    rest = readmodel.entries(mongo_db, a, 10, page["next_cursor"])
    assert [e["side"] for e in rest["entries"]][-1] == "credit"
    assert rest["next_cursor"] is None


def test_a_comparison_beside_a_running_system_is_whole_until_an_account_moves(
    books: Books, servers: Urls, mongo_db: Any
) -> None:
    """Seals written after the replay show in nothing the comparison reads; a transfer does,
    and then the read model's transfers and sums are left alone, not called wrong."""
    a, b = some_activity(books, transfers=1)
    project_everything(books, servers, mongo_db)
    expected = replay(books)
    moved = lambda: moved_since(books, expected.position)
    assert Sealer(books, servers.database_url).seal() is not None
    assert not moved()
    assert compare_read_model(mongo_db, expected, moved).whole
    books.transfer(TransferFunds(unique("t"), a, b, "0.01"))
    assert moved()
    project_everything(books, servers, mongo_db)  # the read model now past the replay
    comparison = compare_read_model(mongo_db, expected, moved)
    assert (comparison.whole, comparison.differences, comparison.moved_since) == (False, [], 2)
    still = compare_read_model(mongo_db, expected, lambda: False)  # as if nothing had been written
    assert {d.subject for d in still.differences} >= {f"account {a}", f"account {b}"}


def test_redelivered_and_republished_events_change_nothing(books: Books, servers: Urls, mongo_db: Any) -> None:
    some_activity(books)
    topic = unique("events")
    relay = make_relay(books, servers, topic)
    drain_relay(relay)
    projector = Projector(mongo_db, servers.consumer(), servers.topic_watch(topic, 3), store_head=books.head_position)
    projector.start()
    project_until(projector, mongo_db, books.head_position())
    entries_before = mongo_db[schema.ENTRIES].count_documents({})

    # The relay forgets its position (as after a crash before it stored it): everything again.
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute("UPDATE relay_state SET position = 0 WHERE topic = %s", (topic,))
    drain_relay(make_relay(books, servers, topic))
    # A second projector reads the whole topic from the start, duplicates included.
    mongo_db[schema.PROJECTOR_STATE].delete_many({"_id": {"$regex": "^partition:"}})
    replayer = Projector(mongo_db, servers.consumer(), servers.topic_watch(topic, 3), store_head=books.head_position)
    replayer.start()
    deadline = time.monotonic() + 30
    while replayer.process_batch(0.5):
        assert time.monotonic() < deadline
    assert mongo_db[schema.ENTRIES].count_documents({}) == entries_before
    assert differences(books, mongo_db) == []


def test_the_relay_resumes_from_its_stored_position(books: Books, servers: Urls) -> None:
    topic = unique("events")
    some_activity(books, transfers=1)
    first = make_relay(books, servers, topic)
    drain_relay(first)
    stored = first.position
    assert stored == books.head_position()
    some_activity(books, transfers=1)
    second = make_relay(books, servers, topic)
    assert second.position == stored
    drain_relay(second)
    assert second.position == books.head_position()


def test_every_partition_gets_a_checkpoint_after_each_batch(books: Books, servers: Urls) -> None:
    topic = unique("events")
    some_activity(books, transfers=1)
    relay = make_relay(books, servers, topic)
    drain_relay(relay)
    consumer = servers.consumer()
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    last_checkpoint: dict[int, int] = {}
    deadline = time.monotonic() + 20
    while len(last_checkpoint) < 3 or min(last_checkpoint.values()) < relay.position:
        assert time.monotonic() < deadline, last_checkpoint
        for message in consumer.consume(500, 0.5):
            headers = decode_headers(message)
            if headers["ce_type"] == CHECKPOINT:
                last_checkpoint[message.partition()] = int(headers["ce_position"])
    consumer.close()
    assert last_checkpoint == {0: relay.position, 1: relay.position, 2: relay.position}


def test_a_single_partition_topic_works_the_same(books: Books, servers: Urls, mongo_db: Any) -> None:
    topic, partitions = unique("events"), 1
    some_activity(books, transfers=2)
    relay = Relay(
        books,
        RelayState(servers.database_url, topic),
        servers.database_url,
        servers.producer(),
        servers.topic_watch(topic, partitions),
    )
    relay.start()
    drain_relay(relay)
    projector = Projector(
        mongo_db, servers.consumer(), servers.topic_watch(topic, partitions), store_head=books.head_position
    )
    projector.start()
    project_until(projector, mongo_db, books.head_position())
    assert differences(books, mongo_db) == []


def test_holds_posts_and_voids_reach_the_read_model(books: Books, servers: Urls, mongo_db: Any) -> None:
    a, b = some_activity(books, transfers=0)
    posted, voided, pending = unique("h"), unique("h"), unique("h")
    for transfer_id in (posted, voided, pending):
        books.transfer(TransferFunds(transfer_id, a, b, "10.00", pending=True))
    books.post_transfer(PostTransfer(posted, "4.00"))
    books.void_transfer(VoidTransfer(voided))
    project_everything(books, servers, mongo_db)
    assert differences(books, mongo_db) == []
    balance = readmodel.account(mongo_db, a)["balance"]
    assert (balance["posted_debits"], balance["pending_debits"], balance["available"]) == ("4.00", "10.00", "86.00")
    assert readmodel.account(mongo_db, b)["balance"]["pending_credits"] == "10.00"
    assert [readmodel.transfer(mongo_db, t)["status"] for t in (posted, voided, pending)] == [
        "posted",
        "voided",
        "pending",
    ]
    assert readmodel.transfer(mongo_db, posted)["posted_amount"] == "4.00"
    kinds = [e["kind"] for e in readmodel.entries(mongo_db, a, 10, None)["entries"]]
    assert kinds[:2] == ["pending_debit_voided", "pending_debit_posted"]


def test_policy_and_lifecycle_changes_reach_the_read_model(books: Books, servers: Urls, mongo_db: Any) -> None:
    a, b = some_activity(books, transfers=0)
    books.change_policy(ChangePolicy(b, {"overdraft_limit": "3.00"}))
    books.account_action(AccountAction(b, "freeze"))
    empty = open_empty(books)
    books.transfer(TransferFunds(unique("t"), a, empty, "100.00"))
    books.account_action(AccountAction(a, "close"))
    project_everything(books, servers, mongo_db)
    assert differences(books, mongo_db) == []
    assert (readmodel.account(mongo_db, b)["status"], readmodel.account(mongo_db, b)["overdraft_limit"]) == (
        "frozen",
        "3.00",
    )
    assert readmodel.account(mongo_db, a)["status"] == "closed"
    assert readmodel.account(mongo_db, empty)["balance"]["available"] == "100.00"


def open_empty(books: Books) -> str:
    account = unique("E")
    books.open_account(OpenAccount(account, "USD/2"))
    return account


def test_transactions_and_reversals_reach_the_read_model(books: Books, servers: Urls, mongo_db: Any) -> None:
    a, b = some_activity(books, transfers=0)
    first, second = unique("l"), unique("l")
    books.transaction(
        ExecuteTransaction(unique("tx"), (TransferFunds(first, a, b, "20.00"), TransferFunds(second, a, b, "1.00")))
    )
    books.reverse_transfer(ReverseTransfer(unique("r"), first, "5.00"))
    project_everything(books, servers, mongo_db)
    assert differences(books, mongo_db) == []
    original = readmodel.transfer(mongo_db, first)
    assert (original["reversed_amount"], original["transaction"]) == (
        "5.00",
        readmodel.transfer(mongo_db, second)["transaction"],
    )
    assert readmodel.account(mongo_db, a)["balance"]["available"] == "84.00"


def test_fees_limits_and_the_largest_amounts_reach_the_read_model(books: Books, servers: Urls, mongo_db: Any) -> None:
    asset = f"P{unique('x')[-6:].upper()}/0"
    a, b = unique("A"), unique("B")
    for account in (a, b):
        books.open_account(OpenAccount(account, asset))
    top = 2**127 - 1
    books.deposit(Deposit(unique("d"), a, str(top)))
    books.set_fee_rule(SetFeeRule(asset, "transfer", FeeTerms(0, 7, 0, None, "recipient")))
    books.change_policy(ChangePolicy(a, {"daily_limit": str(top)}))
    paid = unique("t")
    books.transfer(TransferFunds(paid, a, b, str(top - 1)))
    project_everything(books, servers, mongo_db)
    assert differences(books, mongo_db) == []
    assert readmodel.account(mongo_db, a)["balance"]["available"] == "1"
    assert readmodel.account(mongo_db, a)["daily_limit"] == str(top)
    assert readmodel.account(mongo_db, b)["balance"]["available"] == str(top - 1 - 7)
    assert readmodel.account(mongo_db, fee_account_id(asset))["balance"]["posted_credits"] == "7"
    view = readmodel.transfer(mongo_db, paid)
    assert view["amount"] == str(top - 1)
    assert view["fee"] == {"transfer_id": f"{paid}$fee", "amount": "7", "payer": "recipient"}
    assert [leg["amount"] for leg in view["legs"]] == [str(top - 8), "7"]


def test_balances_as_of_a_position_or_a_time(books: Books, servers: Urls, mongo_db: Any) -> None:
    a, b = unique("A"), unique("B")
    books.open_account(OpenAccount(a, "USD/2"))
    opened = books.open_account(OpenAccount(b, "USD/2"))["position"]
    funded = books.deposit(Deposit(unique("d"), a, "100.00"))["position"]
    between = datetime.now(UTC)
    time.sleep(0.01)
    books.transfer(TransferFunds(unique("t"), a, b, "30.00", pending=True))
    project_everything(books, servers, mongo_db)

    def available(account: str, **point: Any) -> str:
        return str(readmodel.account(mongo_db, account, **point)["balance"]["available"])

    assert available(a, at_position=funded) == "100.00"
    assert available(a, at_position=opened) == "0.00"
    assert available(a, at_time=between) == "100.00"
    assert available(a) == "70.00"
    assert readmodel.account(mongo_db, b)["balance"]["pending_credits"] == "30.00"
    assert readmodel.account(mongo_db, b, at_time=between)["balance"]["pending_credits"] == "0.00"
    with pytest.raises(AccountNotFound, match="did not exist yet"):
        readmodel.account(mongo_db, b, at_position=opened - 1)
