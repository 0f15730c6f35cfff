"""Atomic multi-leg transactions: every leg applies or none does.

On the in-memory event store (``commands.memory_store``); what needs PostgreSQL or HTTP
(the rules over HTTP) is in ``tests/integration/test_transactions.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from commands.application import Books
from commands.messages import ExecuteTransaction, PostTransfer, TransferFunds
from ledger.errors import IdConflict, InsufficientFunds
from tests.conftest import unique
from tests.scenarios import accounts


def leg(debit: str, credit: str, amount: str, **extra: Any) -> TransferFunds:
    return TransferFunds(unique("leg"), debit, credit, amount, **extra)


def test_a_payment_plus_fee_applies_together(books: Books) -> None:
    payer, merchant, fees = accounts(books, 3)
    result = books.transaction(
        ExecuteTransaction(unique("tx"), (leg(payer, merchant, "50.00"), leg(payer, fees, "1.50")))
    )
    assert [t["amount"] for t in result["transfers"]] == ["50.00", "1.50"]
    assert books.account(payer).available == 10000 - 5150
    assert (books.account(merchant).available, books.account(fees).available) == (5000, 150)


def test_if_one_leg_fails_nothing_is_written(books: Books, event_count: Any) -> None:
    payer, merchant, fees = accounts(books, 3)
    before = event_count()
    with pytest.raises(InsufficientFunds, match=r"^transfers\[1\]: "):
        books.transaction(ExecuteTransaction(unique("tx"), (leg(payer, merchant, "99.00"), leg(payer, fees, "1.01"))))
    assert event_count() == before
    assert books.account(payer).available == 10000


def test_later_legs_see_earlier_ones(books: Books) -> None:
    a, b, c = accounts(books, 3)
    books.transaction(ExecuteTransaction(unique("tx"), (leg(a, b, "100.00"), leg(b, c, "100.00"))))
    assert [books.account(x).available for x in (a, b, c)] == [0, 0, 10000]


def test_a_settlement_split_between_parties_mixing_pending_and_posted(books: Books) -> None:
    escrow, seller, platform, courier = accounts(books, 4)
    held = leg(escrow, courier, "10.00", pending=True)
    result = books.transaction(
        ExecuteTransaction(unique("tx"), (leg(escrow, seller, "85.00"), leg(escrow, platform, "5.00"), held))
    )
    assert [t["status"] for t in result["transfers"]] == ["posted", "posted", "pending"]
    assert books.account(escrow).available == 0
    books.post_transfer(PostTransfer(held.id))
    assert books.account(courier).available == 1000


def test_a_retry_returns_the_same_result_and_a_changed_one_conflicts(books: Books, event_count: Any) -> None:
    a, b = accounts(books, 2)
    legs = (leg(a, b, "1.0"), leg(a, b, "2.00"))
    command = ExecuteTransaction(unique("tx"), legs)
    first = books.transaction(command)
    before = event_count()
    assert books.transaction(ExecuteTransaction(command.id, (legs[0], TransferFunds(legs[1].id, a, b, "2")))) == first
    with pytest.raises(IdConflict):
        books.transaction(ExecuteTransaction(command.id, (legs[0], TransferFunds(legs[1].id, a, b, "2.01"))))
    with pytest.raises(IdConflict, match=r"transfers\[0\]: transfer id .* is already used"):
        books.transaction(ExecuteTransaction(unique("tx"), (legs[0],)))
    assert event_count() == before
