"""Account policy and lifecycle: overdraft limits, freeze/unfreeze, safe close.

On the in-memory event store (``commands.memory_store``); what needs PostgreSQL or HTTP
(the rules over HTTP) is in ``tests/integration/test_accounts_lifecycle.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from commands.application import Books
from commands.messages import (
    AccountAction,
    ChangePolicy,
    Deposit,
    PostTransfer,
    TransferFunds,
    VoidTransfer,
)
from ledger.errors import AccountNotEmpty, AccountNotOpen, InsufficientFunds, OverdraftInUse
from tests.conftest import unique
from tests.scenarios import funded_pair


def test_raising_the_overdraft_limit_lets_an_account_go_negative_that_far(books: Books) -> None:
    a, b = funded_pair(books)
    with pytest.raises(InsufficientFunds):
        books.transfer(TransferFunds(unique("t"), a, b, "15.00"))
    result = books.change_policy(ChangePolicy(a, {"overdraft_limit": "5.00"}))
    assert result["overdraft_limit"] == "5.00"
    books.transfer(TransferFunds(unique("t"), a, b, "15.00"))
    assert books.account(a).available == -500
    with pytest.raises(InsufficientFunds):
        books.transfer(TransferFunds(unique("t"), a, b, "0.01"))


def test_changing_the_limit_to_what_it_is_records_nothing(books: Books, event_count: Any) -> None:
    a, _ = funded_pair(books, fund=None)
    first = books.change_policy(ChangePolicy(a, {"overdraft_limit": "1.00"}))
    before = event_count()
    assert books.change_policy(ChangePolicy(a, {"overdraft_limit": "1"})) == first
    assert event_count() == before


def test_a_frozen_account_neither_sends_nor_receives_but_its_pending_transfers_can_be_voided(books: Books) -> None:
    a, b = funded_pair(books)
    held = unique("h")
    books.transfer(TransferFunds(held, a, b, "2.00", pending=True))
    assert books.account_action(AccountAction(a, "freeze"))["status"] == "frozen"
    with pytest.raises(AccountNotOpen, match="frozen"):
        books.transfer(TransferFunds(unique("t"), a, b, "1.00"))
    with pytest.raises(AccountNotOpen, match="frozen"):
        books.transfer(TransferFunds(unique("t"), b, a, "1.00"))
    with pytest.raises(AccountNotOpen):
        books.deposit(Deposit(unique("d"), a, "1.00"))
    with pytest.raises(AccountNotOpen):
        books.post_transfer(PostTransfer(held))
    assert books.void_transfer(VoidTransfer(held))["status"] == "voided"
    assert books.account_action(AccountAction(a, "unfreeze"))["status"] == "open"
    books.transfer(TransferFunds(unique("t"), a, b, "1.00"))


def test_freezing_twice_is_a_no_op(books: Books, event_count: Any) -> None:
    a, _ = funded_pair(books, fund=None)
    first = books.account_action(AccountAction(a, "freeze"))
    before = event_count()
    assert books.account_action(AccountAction(a, "freeze")) == first
    assert event_count() == before


def test_an_account_closes_only_when_empty_with_nothing_in_flight(books: Books, event_count: Any) -> None:
    a, b = funded_pair(books)
    held = unique("h")
    books.transfer(TransferFunds(held, a, b, "4.00", pending=True))
    before = event_count()
    with pytest.raises(AccountNotEmpty, match="balance is 10.00 and it has pending transfers"):
        books.account_action(AccountAction(a, "close"))
    with pytest.raises(AccountNotEmpty, match="pending transfers"):
        books.account_action(AccountAction(b, "close"))
    assert event_count() == before
    books.void_transfer(VoidTransfer(held))
    books.transfer(TransferFunds(unique("t"), a, b, "10.00"))
    assert books.account_action(AccountAction(a, "close"))["status"] == "closed"
    with pytest.raises(AccountNotOpen, match="closed"):
        books.transfer(TransferFunds(unique("t"), b, a, "1.00"))
    with pytest.raises(AccountNotOpen, match="closed"):
        books.account_action(AccountAction(a, "unfreeze"))
    with pytest.raises(AccountNotOpen, match="closed"):
        books.change_policy(ChangePolicy(a, {"overdraft_limit": "1.00"}))
    assert books.account_action(AccountAction(a, "close"))["status"] == "closed"


def test_a_limit_the_account_is_already_beyond_is_refused(books: Books, event_count: Any) -> None:
    a, b = funded_pair(books, fund=None)
    books.change_policy(ChangePolicy(a, {"overdraft_limit": "5.00"}))
    books.transfer(TransferFunds(unique("t"), a, b, "4.00"))
    before = event_count()
    with pytest.raises(OverdraftInUse, match="-4.00 available"):
        books.change_policy(ChangePolicy(a, {"overdraft_limit": "3.99"}))
    assert event_count() == before
    assert books.change_policy(ChangePolicy(a, {"overdraft_limit": "4.00"}))["overdraft_limit"] == "4.00"
