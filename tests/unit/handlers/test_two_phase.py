"""Pending transfers: make, post (in full or for less), void, expire; each resolves at
most once.

On the in-memory event store (``commands.memory_store``); what needs PostgreSQL or HTTP
(racing writers, the expirer's SQL side table, a connection reused across retries) is in
``tests/integration/test_two_phase.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from commands.application import Ledger
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


def test_a_pending_transfer_makes_funds_unavailable_without_moving_them(ledger: Ledger) -> None:
    a, b = funded(ledger)
    make_pending(ledger, a, b)
    assert balances(ledger, a) == (0, 10000, 3000, 0, 7000)
    assert balances(ledger, b) == (0, 0, 0, 3000, 0)
    with pytest.raises(InsufficientFunds):
        ledger.transfer(TransferFunds(unique("t"), a, b, "70.01"))


def test_posting_for_less_settles_that_and_releases_the_rest(ledger: Ledger) -> None:
    a, b = funded(ledger)
    transfer_id = make_pending(ledger, a, b)
    result = ledger.post_transfer(PostTransfer(transfer_id, "20.00"))
    assert (result["status"], result["posted_amount"], result["amount"]) == ("posted", "20.00", "30.00")
    assert balances(ledger, a) == (2000, 10000, 0, 0, 8000)
    assert balances(ledger, b) == (0, 2000, 0, 0, 2000)


def test_voiding_releases_everything(ledger: Ledger) -> None:
    a, b = funded(ledger)
    transfer_id = make_pending(ledger, a, b)
    assert ledger.void_transfer(VoidTransfer(transfer_id))["status"] == "voided"
    assert balances(ledger, a) == (0, 10000, 0, 0, 10000)
    assert balances(ledger, b) == (0, 0, 0, 0, 0)


def test_a_pending_transfer_resolves_at_most_once(ledger: Ledger, event_count: Any) -> None:
    a, b = funded(ledger)
    voided = make_pending(ledger, a, b, "10.00")
    ledger.void_transfer(VoidTransfer(voided))
    posted = make_pending(ledger, a, b, "10.00")
    first = ledger.post_transfer(PostTransfer(posted))
    before = event_count()
    with pytest.raises(TransferNotPending):
        ledger.post_transfer(PostTransfer(voided))
    with pytest.raises(TransferNotPending):
        ledger.void_transfer(VoidTransfer(posted))
    with pytest.raises(TransferNotPending, match="already posted for 10.00"):
        ledger.post_transfer(PostTransfer(posted, "5.00"))
    assert ledger.post_transfer(PostTransfer(posted)) == first  # an idempotent retry
    assert ledger.post_transfer(PostTransfer(posted, "10.00")) == first
    assert ledger.void_transfer(VoidTransfer(voided))["status"] == "voided"
    assert event_count() == before


def test_posting_more_than_is_pending_writes_nothing(ledger: Ledger, event_count: Any) -> None:
    a, b = funded(ledger)
    transfer_id = make_pending(ledger, a, b)
    before = event_count()
    with pytest.raises(ExceedsPending, match="holds 30.00; cannot post 30.01"):
        ledger.post_transfer(PostTransfer(transfer_id, "30.01"))
    assert event_count() == before


def test_only_pending_transfers_can_be_posted_or_voided(ledger: Ledger) -> None:
    a, b = funded(ledger)
    plain = unique("t")
    ledger.transfer(TransferFunds(plain, a, b, "1.00"))
    with pytest.raises(TransferNotPending, match="never pending"):
        ledger.post_transfer(PostTransfer(plain))
    with pytest.raises(TransferNotFound):
        ledger.void_transfer(VoidTransfer(unique("nothing")))


def test_retrying_a_pending_transfer_is_idempotent_and_a_changed_one_conflicts(
    ledger: Ledger, event_count: Any
) -> None:
    a, b = funded(ledger)
    command = TransferFunds(unique("h"), a, b, "3.00", pending=True, timeout_seconds=30)
    first = ledger.transfer(command)
    before = event_count()
    assert ledger.transfer(command) == first
    with pytest.raises(IdConflict):
        ledger.transfer(TransferFunds(command.id, a, b, "3.00"))  # not pending this time
    assert event_count() == before


def test_a_retry_with_another_timeout_is_a_different_request(ledger: Ledger, event_count: Any) -> None:
    a, b = funded(ledger)
    command = TransferFunds(unique("h"), a, b, "1.00", pending=True, timeout_seconds=60)
    ledger.transfer(command)
    before = event_count()
    with pytest.raises(IdConflict):
        ledger.transfer(TransferFunds(command.id, a, b, "1.00", pending=True, timeout_seconds=86400))
    assert event_count() == before


def test_a_retry_answers_what_the_first_attempt_answered(ledger: Ledger) -> None:
    a, b = funded(ledger)
    command = TransferFunds(unique("h"), a, b, "1.00", pending=True)
    first = ledger.transfer(command)
    posted = ledger.post_transfer(PostTransfer(command.id, "0.50"))
    assert ledger.transfer(command) == first  # still "pending", as first answered
    ledger.reverse_transfer(ReverseTransfer(unique("r"), command.id))
    assert ledger.post_transfer(PostTransfer(command.id, "0.50")) == posted
