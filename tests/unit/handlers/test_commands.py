"""The command handlers on the in-memory event store (``commands.memory_store``): no
server.

What needs PostgreSQL (amounts read back cold, a write that keeps conflicting,
concurrent writers) is in ``tests/integration/test_commands.py``.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from commands.application import Books
from commands.messages import Deposit, OpenAccount, TransferFunds
from ledger.errors import AccountNotFound, AssetMismatch, IdConflict, InsufficientFunds, InvalidAmount
from tests.conftest import unique
from tests.scenarios import open_pair


def test_a_deposit_then_a_transfer_moves_exact_amounts(books: Books) -> None:
    a, b = open_pair(books)
    books.deposit(Deposit(unique("d"), a, "100.00"))
    result = books.transfer(TransferFunds(unique("t"), a, b, "30.00"))
    assert result["status"] == "posted"
    assert (books.account(a).available, books.account(b).available) == (7000, 3000)


def test_every_write_returns_the_position_of_its_last_event(books: Books) -> None:
    a, b = open_pair(books)
    deposit = books.deposit(Deposit(unique("d"), a, "1.00"))
    assert deposit["position"] == books.head_position()
    transfer = books.transfer(TransferFunds(unique("t"), a, b, "1.00"))
    assert transfer["position"] == books.head_position() > deposit["position"]


def test_retrying_a_transfer_returns_the_same_result_and_moves_nothing(books: Books, event_count: Any) -> None:
    a, b = open_pair(books)
    books.deposit(Deposit(unique("d"), a, "100.00"))
    command = TransferFunds(unique("t"), a, b, "30.00")
    first = books.transfer(command)
    before = event_count()
    assert books.transfer(command) == first
    assert event_count() == before
    assert books.account(a).available == 7000


def test_reusing_an_id_with_a_different_body_is_a_conflict(books: Books, event_count: Any) -> None:
    a, b = open_pair(books)
    books.deposit(Deposit(unique("d"), a, "100.00"))
    transfer_id = unique("t")
    books.transfer(TransferFunds(transfer_id, a, b, "30.00"))
    before = event_count()
    with pytest.raises(IdConflict):
        books.transfer(TransferFunds(transfer_id, a, b, "31.00"))
    with pytest.raises(IdConflict):
        books.deposit(Deposit(transfer_id, a, "30.00"))
    with pytest.raises(IdConflict):
        books.open_account(OpenAccount(a, "EUR/2"))
    assert event_count() == before


def test_reopening_an_account_with_the_same_body_is_idempotent(books: Books, event_count: Any) -> None:
    account_id = unique("A")
    first = books.open_account(OpenAccount(account_id, "USD/2", 500, {"owner": "ann"}))
    before = event_count()
    assert books.open_account(OpenAccount(account_id, "USD/2", 500, {"owner": "ann"})) == first
    assert event_count() == before


def test_a_transfer_larger_than_the_balance_writes_nothing(books: Books, event_count: Any) -> None:
    a, b = open_pair(books)
    books.deposit(Deposit(unique("d"), a, "10.00"))
    before = event_count()
    with pytest.raises(InsufficientFunds):
        books.transfer(TransferFunds(unique("t"), a, b, "10.01"))
    assert event_count() == before
    assert books.account(a).available == 1000


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"amount": "1.001"}, InvalidAmount),
        ({"credit_account": "nobody-here"}, AccountNotFound),
        ({"credit_account": "EUR"}, AssetMismatch),
    ],
)
def test_rejected_transfers_write_nothing(
    books: Books, event_count: Any, change: dict[str, str], error: type[Exception]
) -> None:
    a, b = open_pair(books)
    euro = unique("E")
    books.open_account(OpenAccount(euro, "EUR/2"))
    books.deposit(Deposit(unique("d"), a, "10.00"))
    fields = {"id": unique("t"), "debit_account": a, "credit_account": b, "amount": "1.00"} | change
    if fields["credit_account"] == "EUR":
        fields["credit_account"] = euro
    before = event_count()
    with pytest.raises(error):
        books.transfer(TransferFunds(**fields))
    assert event_count() == before


def test_concurrent_spenders_never_overdraw_and_money_is_conserved(books: Books) -> None:
    source, sink = open_pair(books)
    books.deposit(Deposit(unique("d"), source, "10.00"))
    outcomes: list[str] = []

    def spend() -> None:
        for _ in range(15):
            try:
                books.transfer(TransferFunds(unique("t"), source, sink, "0.50"))
                outcomes.append("ok")
            except InsufficientFunds:
                outcomes.append("refused")

    threads = [threading.Thread(target=spend) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 20
    assert books.account(source).available == 0
    assert books.account(sink).available == 1000


def test_the_same_transfer_sent_twice_at_once_applies_once(books: Books) -> None:
    a, b = open_pair(books)
    books.deposit(Deposit(unique("d"), a, "100.00"))
    command = TransferFunds(unique("t"), a, b, "40.00")
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(books.transfer(command))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and all(r == results[0] for r in results)
    assert books.account(a).available == 6000


def test_a_retry_answers_as_first_even_when_the_money_has_moved_on_since(books: Books, event_count: Any) -> None:
    a, b = open_pair(books)
    books.deposit(Deposit(unique("d"), a, "100.00"))
    command = TransferFunds(unique("t"), a, b, "30.00")
    first = books.transfer(command)
    books.transfer(TransferFunds(unique("t"), a, b, "70.00"))  # a is empty now
    before = event_count()
    assert books.transfer(command) == first  # not insufficient_funds
    assert event_count() == before
