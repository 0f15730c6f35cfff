"""Reversals: compensating transfers; the total reversed never exceeds the original.

On the in-memory event store (``commands.memory_store``); what needs PostgreSQL or HTTP
(the rules over HTTP, and racing reversals) is in
``tests/integration/test_reversals.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from commands.application import Books
from commands.messages import Deposit, OpenAccount, ReverseTransfer, TransferFunds
from ledger.errors import ExceedsReversible, IdConflict, InsufficientFunds, TransferNotPosted
from ledger.ids import issuance_account_id
from tests.conftest import unique
from tests.scenarios import paid


def test_a_partial_then_a_full_reversal_never_exceed_the_original(books: Books, event_count: Any) -> None:
    a, b, transfer_id = paid(books)
    first = books.reverse_transfer(ReverseTransfer(unique("r"), transfer_id, "10.00"))
    assert (first["debit_account"], first["credit_account"], first["reverses"]) == (b, a, transfer_id)
    rest = books.reverse_transfer(ReverseTransfer(unique("r"), transfer_id))
    assert rest["amount"] == "20.00"
    assert (books.account(a).available, books.account(b).available) == (10000, 0)
    assert books.transfer_record(transfer_id).reversed_amount == 3000  # type: ignore[union-attr]
    before = event_count()
    with pytest.raises(ExceedsReversible, match="0.00 left"):
        books.reverse_transfer(ReverseTransfer(unique("r"), transfer_id, "0.01"))
    assert event_count() == before


def test_a_reversal_is_idempotent_on_its_own_id(books: Books, event_count: Any) -> None:
    _, _, transfer_id = paid(books)
    command = ReverseTransfer(unique("r"), transfer_id, "5.00")
    first = books.reverse_transfer(command)
    before = event_count()
    assert books.reverse_transfer(command) == first
    with pytest.raises(IdConflict):
        books.reverse_transfer(ReverseTransfer(command.id, transfer_id, "6.00"))
    assert event_count() == before


def test_a_recipient_that_spent_the_money_cannot_be_reversed_below_its_limit(books: Books) -> None:
    a, b, transfer_id = paid(books)
    books.transfer(TransferFunds(unique("t"), b, a, "25.00"))
    with pytest.raises(InsufficientFunds):
        books.reverse_transfer(ReverseTransfer(unique("r"), transfer_id))
    books.reverse_transfer(ReverseTransfer(unique("r"), transfer_id, "5.00"))


def test_pending_transfers_do_not_reverse_and_deposits_go_back_to_issuance(books: Books) -> None:
    a, b = unique("A"), unique("B")
    books.open_account(OpenAccount(a, "EUR/2"))
    books.open_account(OpenAccount(b, "EUR/2"))
    deposit_id = unique("d")
    books.deposit(Deposit(deposit_id, a, "50.00"))
    held = unique("h")
    books.transfer(TransferFunds(held, a, b, "1.00", pending=True))
    with pytest.raises(TransferNotPosted):
        books.reverse_transfer(ReverseTransfer(unique("r"), held))
    issuance_before = books.account(issuance_account_id("EUR/2")).posted_credits
    books.reverse_transfer(ReverseTransfer(unique("r"), deposit_id, "49.00"))
    assert books.account(a).available == 0
    assert books.account(issuance_account_id("EUR/2")).posted_credits == issuance_before + 4900
