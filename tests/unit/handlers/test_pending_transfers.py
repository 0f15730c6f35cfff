"""Pending transfers: make, post (in full or for less), void, expire; each resolves at
most once.

On the in-memory event store (``commands.memory_store``); what needs PostgreSQL or HTTP
(racing writers, the expirer's SQL side table, a connection reused across retries) is in
``tests/integration/test_pending_transfers.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from commands.application import Books
from commands.messages import PostTransfer, ReverseTransfer, TransferFunds, VoidTransfer
from ledger.errors import (
    ExceedsPending,
    IdConflict,
    InsufficientFunds,
    TransferNotFound,
    TransferNotPending,
)
from tests.conftest import funded, unique
from tests.scenarios import balances, make_pending


def test_a_pending_transfer_makes_funds_unavailable_without_moving_them(books: Books) -> None:
    a, b = funded(books)
    make_pending(books, a, b)
    assert balances(books, a) == (0, 10000, 3000, 0, 7000)
    assert balances(books, b) == (0, 0, 0, 3000, 0)
    with pytest.raises(InsufficientFunds):
        books.transfer(TransferFunds(unique("t"), a, b, "70.01"))


def test_posting_for_less_settles_that_and_releases_the_rest(books: Books) -> None:
    a, b = funded(books)
    transfer_id = make_pending(books, a, b)
    result = books.post_transfer(PostTransfer(transfer_id, "20.00"))
    assert (result["status"], result["posted_amount"], result["amount"]) == ("posted", "20.00", "30.00")
    assert balances(books, a) == (2000, 10000, 0, 0, 8000)
    assert balances(books, b) == (0, 2000, 0, 0, 2000)


def test_voiding_releases_everything(books: Books) -> None:
    a, b = funded(books)
    transfer_id = make_pending(books, a, b)
    assert books.void_transfer(VoidTransfer(transfer_id))["status"] == "voided"
    assert balances(books, a) == (0, 10000, 0, 0, 10000)
    assert balances(books, b) == (0, 0, 0, 0, 0)


def test_a_pending_transfer_resolves_at_most_once(books: Books, event_count: Any) -> None:
    a, b = funded(books)
    voided = make_pending(books, a, b, "10.00")
    books.void_transfer(VoidTransfer(voided))
    posted = make_pending(books, a, b, "10.00")
    first = books.post_transfer(PostTransfer(posted))
    before = event_count()
    with pytest.raises(TransferNotPending):
        books.post_transfer(PostTransfer(voided))
    with pytest.raises(TransferNotPending):
        books.void_transfer(VoidTransfer(posted))
    with pytest.raises(TransferNotPending, match="already posted for 10.00"):
        books.post_transfer(PostTransfer(posted, "5.00"))
    assert books.post_transfer(PostTransfer(posted)) == first  # an idempotent retry
    assert books.post_transfer(PostTransfer(posted, "10.00")) == first
    assert books.void_transfer(VoidTransfer(voided))["status"] == "voided"
    assert event_count() == before


def test_posting_more_than_is_pending_writes_nothing(books: Books, event_count: Any) -> None:
    a, b = funded(books)
    transfer_id = make_pending(books, a, b)
    before = event_count()
    with pytest.raises(ExceedsPending, match="holds 30.00; cannot post 30.01"):
        books.post_transfer(PostTransfer(transfer_id, "30.01"))
    assert event_count() == before


def test_only_pending_transfers_can_be_posted_or_voided(books: Books) -> None:
    a, b = funded(books)
    plain = unique("t")
    books.transfer(TransferFunds(plain, a, b, "1.00"))
    with pytest.raises(TransferNotPending, match="never pending"):
        books.post_transfer(PostTransfer(plain))
    with pytest.raises(TransferNotFound):
        books.void_transfer(VoidTransfer(unique("nothing")))


def test_retrying_a_pending_transfer_is_idempotent_and_a_changed_one_conflicts(books: Books, event_count: Any) -> None:
    a, b = funded(books)
    command = TransferFunds(unique("h"), a, b, "3.00", pending=True, timeout_seconds=30)
    first = books.transfer(command)
    before = event_count()
    assert books.transfer(command) == first
    with pytest.raises(IdConflict):
        books.transfer(TransferFunds(command.id, a, b, "3.00"))  # not pending this time
    assert event_count() == before


def test_a_retry_with_another_timeout_is_a_different_request(books: Books, event_count: Any) -> None:
    a, b = funded(books)
    command = TransferFunds(unique("h"), a, b, "1.00", pending=True, timeout_seconds=60)
    books.transfer(command)
    before = event_count()
    with pytest.raises(IdConflict):
        books.transfer(TransferFunds(command.id, a, b, "1.00", pending=True, timeout_seconds=86400))
    assert event_count() == before


def test_a_retry_answers_what_the_first_attempt_answered(books: Books) -> None:
    a, b = funded(books)
    command = TransferFunds(unique("h"), a, b, "1.00", pending=True)
    first = books.transfer(command)
    posted = books.post_transfer(PostTransfer(command.id, "0.50"))
    assert books.transfer(command) == first  # still "pending", as first answered
    books.reverse_transfer(ReverseTransfer(unique("r"), command.id))
    assert books.post_transfer(PostTransfer(command.id, "0.50")) == posted
