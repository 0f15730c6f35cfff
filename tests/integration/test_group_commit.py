"""Group commit on the real event store: commands that arrive together are saved in one
transaction, and each is answered exactly as if it had been sent alone.

To make a group form at a known moment, the test holds the event store's table lock
from another connection: the writer's save waits for it, the commands sent meanwhile
queue up, and when the lock is released they all go into the next group. The store's
``write_position`` (the first position of the transaction that wrote an event) shows
which events one transaction wrote.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY

from commands.answers import Replayed
from commands.application import Books
from commands.event_store import event_store_env
from commands.messages import Deposit, OpenAccount, PostTransfer, TransferBatch, TransferFunds
from ledger.errors import IdConflict, InsufficientFunds, LedgerError
from ledger.ids import account_uuid, transfer_uuid
from tests.conftest import Urls, funded, unique


@pytest.fixture
def writer(servers: Urls) -> Iterator[Books]:
    """A ledger of its own, so that its writer's queue holds only this test's commands."""
    books = Books(event_store_env(servers.settings()))
    yield books
    books.close()


@contextmanager
def writer_held(servers: Urls) -> Iterator[None]:
    """Hold the table lock every save takes, so the writer's next save waits."""
    with psycopg.connect(servers.database_url) as conn:
        conn.execute("LOCK TABLE ledger_events IN EXCLUSIVE MODE")
        yield
        conn.rollback()


def in_one_group(servers: Urls, books: Books, commands: list[Callable[[], Any]]) -> list[Any]:
    """Run the commands concurrently so that they all land in one group; each one's
    answer, or the error it raised."""
    answers: list[Any] = [None] * len(commands)

    def run(index: int) -> None:
        try:
            answers[index] = commands[index]()
        except LedgerError as exc:
            answers[index] = exc

    a, b = unique("gate-a"), unique("gate-b")
    books.open_account(OpenAccount(a, "USD/2"))
    books.open_account(OpenAccount(b, "USD/2"))
    with writer_held(servers):
        gate = threading.Thread(target=lambda: books.open_account(OpenAccount(unique("gate"), "USD/2")))
        gate.start()  # the writer takes it, and waits for the lock to save it
        time.sleep(0.3)
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(commands))]
        for queued, thread in enumerate(threads, start=1):
            thread.start()  # one after the other, so the group holds them in this order
            deadline = time.monotonic() + 10
            while books.waiting() < queued:
                assert time.monotonic() < deadline, "the command never queued"
                time.sleep(0.002)
    gate.join()
    for thread in threads:
        thread.join()
    return answers


def write_positions(servers: Urls, *stream_ids: Any) -> set[int]:
    with psycopg.connect(servers.database_url) as conn:
        rows = conn.execute(
            "SELECT DISTINCT write_position FROM ledger_events WHERE originator_id = ANY(%s)", (list(stream_ids),)
        ).fetchall()
    return {row[0] for row in rows}


def test_commands_that_arrive_together_are_saved_in_one_transaction(servers: Urls, writer: Books) -> None:
    pairs = [funded(writer) for _ in range(10)]
    ids = [unique("t") for _ in pairs]
    answers = in_one_group(
        servers,
        writer,
        [
            lambda a=a, b=b, i=i: writer.transfer(TransferFunds(i, a, b, "1.00"))
            for (a, b), i in zip(pairs, ids, strict=True)
        ],
    )
    assert [answer["id"] for answer in answers] == ids
    assert len(write_positions(servers, *(transfer_uuid(i) for i in ids))) == 1  # one transaction
    assert writer.grouped - writer.groups >= len(ids) - 1  # and the writer counted one group of them
    positions = [answer["position"] for answer in answers]
    assert len(set(positions)) == len(positions)  # each its own position: that of its own last event
    for (a, b), answer in zip(pairs, answers, strict=True):
        assert (writer.account(a).available, writer.account(b).available) == (9900, 100)
        assert answer["status"] == "posted"


def test_a_refused_command_changes_nothing_and_its_neighbours_go_through(servers: Urls, writer: Books) -> None:
    a, b = funded(writer, "3.00")
    ids = [unique("t") for _ in range(6)]
    answers = in_one_group(servers, writer, [lambda i=i: writer.transfer(TransferFunds(i, a, b, "1.00")) for i in ids])
    refused = [answer for answer in answers if isinstance(answer, InsufficientFunds)]
    accepted = [answer for answer in answers if isinstance(answer, dict)]
    assert (len(accepted), len(refused)) == (3, 3)  # one account, one group, no retry needed
    assert writer.conflicts == 0
    assert (writer.account(a).available, writer.account(b).available) == (0, 300)
    for i, answer in zip(ids, answers, strict=True):
        exists = writer.transfer_record(i) is not None
        assert exists == isinstance(answer, dict)


def test_idempotency_holds_inside_one_group(servers: Urls, writer: Books) -> None:
    a, b = funded(writer)
    same = unique("t")
    answers = in_one_group(
        servers,
        writer,
        [
            lambda: writer.transfer(TransferFunds(same, a, b, "2.00")),
            lambda: writer.transfer(TransferFunds(same, a, b, "2.00")),  # a retry: the same answer
            lambda: writer.transfer(TransferFunds(same, a, b, "3.00")),  # another body: refused
            lambda: writer.transfer(TransferFunds(same, a, b, "2.00")),
        ],
    )
    first, retried, other, again = answers
    assert isinstance(first, dict) and first == retried == again
    assert not isinstance(first, Replayed) and isinstance(retried, Replayed) and isinstance(again, Replayed)
    assert isinstance(other, IdConflict)
    assert (writer.account(a).available, writer.account(b).available) == (9800, 200)  # moved once


def test_idempotency_holds_across_groups_and_writers(servers: Urls, writer: Books) -> None:
    """Another writer (another process's application) answers a retry as the first did."""
    a, b = funded(writer)
    first = writer.transfer(TransferFunds(same := unique("t"), a, b, "2.00"))
    other = Books(event_store_env(servers.settings()))
    try:
        replayed = other.transfer(TransferFunds(same, a, b, "2.00"))
        assert replayed == first and isinstance(replayed, Replayed) and not isinstance(first, Replayed)
        with pytest.raises(IdConflict):
            other.transfer(TransferFunds(same, a, b, "2.50"))
    finally:
        other.close()
    assert writer.account(a).available == 9800


def test_a_hold_made_and_posted_in_one_group(servers: Urls, writer: Books) -> None:
    """A later command sees what an earlier one of its group did before anything is saved."""
    a, b = funded(writer)
    hold = unique("h")
    answers = in_one_group(
        servers,
        writer,
        [
            lambda: writer.transfer(TransferFunds(hold, a, b, "5.00", pending=True)),
            lambda: writer.post_transfer(PostTransfer(hold, "4.00")),
            lambda: writer.transfer(TransferFunds(hold, a, b, "5.00", pending=True)),  # answered as first
        ],
    )
    made, posted, retried = answers
    assert (made["status"], posted["status"], retried["status"]) == ("pending", "posted", "pending")
    assert made == retried and posted["position"] > made["position"]
    assert (writer.account(a).available, writer.account(b).available) == (9600, 400)


def test_hot_account_commands_in_one_group_need_no_retry(servers: Urls, writer: Books) -> None:
    source = unique("hot")
    writer.open_account(OpenAccount(source, "USD/2"))
    writer.deposit(Deposit(unique("d"), source, "50.00"))
    sinks = [unique("sink") for _ in range(5)]
    for sink in sinks:
        writer.open_account(OpenAccount(sink, "USD/2"))
    commands = [
        lambda n=n: writer.transfer(TransferFunds(unique("t"), source, sinks[n % 5], "1.00")) for n in range(40)
    ]
    answers = in_one_group(servers, writer, commands)
    assert all(isinstance(answer, dict) for answer in answers)
    assert writer.conflicts == 0
    assert writer.account(source).available == 1000
    assert len(write_positions(servers, account_uuid(source))) == 3  # opened, funded, then one group


def test_a_batch_and_single_transfers_share_a_group(servers: Urls, writer: Books) -> None:
    a, b = funded(writer, "10.00")
    legs = tuple(TransferFunds(unique("t"), a, b, "3.00") for _ in range(4))  # the 4th finds too little
    answers = in_one_group(
        servers,
        writer,
        [
            lambda: writer.transfer(TransferFunds(unique("t"), a, b, "0.50")),
            lambda: writer.transfer_batch(TransferBatch(legs)),
            lambda: writer.transfer(TransferFunds(unique("t"), b, a, "1.00")),
        ],
    )
    before, batch, after = answers
    assert isinstance(before, dict) and isinstance(after, dict)
    assert [isinstance(r, dict) for r in batch] == [True, True, True, False]
    assert isinstance(batch[3], InsufficientFunds)
    assert len({r["position"] for r in batch[:3]}) == 3
    assert (writer.account(a).available, writer.account(b).available) == (150, 850)


def test_two_writers_racing_on_one_account_count_their_retries(servers: Urls, writer: Books) -> None:
    """Each group run again after another writer saved first is a retry, counted in
    ``ledger_write_conflicts_total``; every transfer still goes through exactly once."""
    a, b = funded(writer, "1000.00")
    other = Books(event_store_env(servers.settings()))
    counted = REGISTRY.get_sample_value("ledger_write_conflicts_total") or 0.0
    try:

        def spend(books: Books) -> None:
            for _ in range(15):
                books.transfer(TransferFunds(unique("t"), a, b, "1.00"))

        racers = [threading.Thread(target=spend, args=(books,)) for books in (writer, other, writer, other)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()
        assert REGISTRY.get_sample_value("ledger_write_conflicts_total") == counted + writer.conflicts + other.conflicts
    finally:
        other.close()
    assert writer.account(a).available == 100_000 - 60 * 100
