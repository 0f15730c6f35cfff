"""Fee rules applied to transfers: legs in the same atomic write, shown in the results.

On the in-memory event store (``commands.memory_store``); what needs PostgreSQL or HTTP
(the rules over HTTP, and rules changed by another process) is in
``tests/integration/test_fees.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from commands.application import Books
from commands.messages import (
    ExecuteTransaction,
    PostTransfer,
    TransferFunds,
    VoidTransfer,
)
from ledger.errors import FeeExceedsAmount, InsufficientFunds
from ledger.ids import fee_account_id
from tests.conftest import unique
from tests.scenarios import fee_pair, set_rule


@pytest.fixture
def asset(books: Books) -> Iterator[str]:
    """A fresh asset per test, so its fee rule applies to this test only."""
    yield f"F{unique('x')[-8:].upper()}/2"


def test_the_sender_pays_on_top(books: Books, asset: str) -> None:
    a, b = fee_pair(books, asset)
    set_rule(books, asset, "sender")
    result = books.transfer(TransferFunds(unique("t"), a, b, "50.00"))
    assert result["fee"]["amount"] == "0.75" and result["fee"]["payer"] == "sender"
    assert (books.account(a).available, books.account(b).available) == (10000 - 5075, 5000)
    assert books.account(fee_account_id(asset)).posted_credits == 75


def test_the_recipient_gets_the_amount_less_the_fee(books: Books, asset: str) -> None:
    a, b = fee_pair(books, asset)
    set_rule(books, asset, "recipient")
    result = books.transfer(TransferFunds(unique("t"), a, b, "50.00"))
    assert result["amount"] == "50.00"
    assert (books.account(a).available, books.account(b).available) == (5000, 5000 - 75)


def test_the_fee_needs_funds_too_and_a_refusal_writes_nothing(books: Books, asset: str, event_count: Any) -> None:
    a, b = fee_pair(books, asset, fund="10.00")
    set_rule(books, asset, "sender")
    before = event_count()
    with pytest.raises(InsufficientFunds):
        books.transfer(TransferFunds(unique("t"), a, b, "10.00"))
    assert event_count() == before


def test_a_fee_that_eats_the_whole_amount_is_refused(books: Books, asset: str) -> None:
    a, b = fee_pair(books, asset)
    set_rule(books, asset, "recipient", minimum=100)
    with pytest.raises(FeeExceedsAmount):
        books.transfer(TransferFunds(unique("t"), a, b, "1.00"))


def test_a_held_fee_follows_its_transfer(books: Books, asset: str) -> None:
    a, b = fee_pair(books, asset)
    set_rule(books, asset, "recipient", basis_points=0, fixed=0, minimum=100, maximum=100)
    posted, voided = unique("h"), unique("h")
    for transfer_id in (posted, voided):
        books.transfer(TransferFunds(transfer_id, a, b, "40.00", pending=True))
    assert books.account(a).pending_debits == 8000  # 39.00 + 1.00 fee, twice
    result = books.post_transfer(PostTransfer(posted, "30.00"))
    assert result["posted_amount"] == "29.00"
    assert books.post_transfer(PostTransfer(posted, "30.00")) == result  # a retry
    books.void_transfer(VoidTransfer(voided))
    account = books.account(a)
    assert (account.pending_debits, account.posted_debits) == (0, 3000)
    assert books.account(b).posted_credits == 2900
    assert books.account(fee_account_id(asset)).posted_credits == 100


def test_setting_the_same_rule_again_records_nothing(books: Books, asset: str, event_count: Any) -> None:
    fee_pair(books, asset)
    first = set_rule(books, asset, "sender")
    before = event_count()
    assert set_rule(books, asset, "sender") == first
    assert event_count() == before
    changed = set_rule(books, asset, "sender", basis_points=200)
    assert changed["basis_points"] == 200 and changed["position"] > first["position"]


def test_every_leg_of_a_transaction_is_charged(books: Books, asset: str) -> None:
    a, b = fee_pair(books, asset)
    set_rule(books, asset, "sender")
    result = books.transaction(
        ExecuteTransaction(
            unique("tx"), (TransferFunds(unique("l"), a, b, "50.00"), TransferFunds(unique("l"), a, b, "10.00"))
        )
    )
    assert [t["fee"]["amount"] for t in result["transfers"]] == ["0.75", "0.35"]
    assert books.account(a).available == 10000 - 6000 - 110
    assert books.account(fee_account_id(asset)).posted_credits == 110
