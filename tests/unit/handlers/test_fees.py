"""Fee rules applied to transfers: legs in the same atomic write, shown in the results.

On the in-memory event store (``commands.memory_store``); what needs PostgreSQL or HTTP
(the rules over HTTP, and rules changed by another process) is in
``tests/integration/test_fees.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from commands.application import Ledger
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
def asset(ledger: Ledger) -> Iterator[str]:
    """A fresh asset per test, so its fee rule applies to this test only."""
    yield f"F{unique('x')[-8:].upper()}/2"


def test_the_sender_pays_on_top(ledger: Ledger, asset: str) -> None:
    a, b = fee_pair(ledger, asset)
    set_rule(ledger, asset, "sender")
    result = ledger.transfer(TransferFunds(unique("t"), a, b, "50.00"))
    assert result["fee"]["amount"] == "0.75" and result["fee"]["payer"] == "sender"
    assert (ledger.account(a).available, ledger.account(b).available) == (10000 - 5075, 5000)
    assert ledger.account(fee_account_id(asset)).posted_credits == 75


def test_the_recipient_gets_the_amount_less_the_fee(ledger: Ledger, asset: str) -> None:
    a, b = fee_pair(ledger, asset)
    set_rule(ledger, asset, "recipient")
    result = ledger.transfer(TransferFunds(unique("t"), a, b, "50.00"))
    assert result["amount"] == "50.00"
    assert (ledger.account(a).available, ledger.account(b).available) == (5000, 5000 - 75)


def test_the_fee_needs_funds_too_and_a_refusal_writes_nothing(ledger: Ledger, asset: str, event_count: Any) -> None:
    a, b = fee_pair(ledger, asset, fund="10.00")
    set_rule(ledger, asset, "sender")
    before = event_count()
    with pytest.raises(InsufficientFunds):
        ledger.transfer(TransferFunds(unique("t"), a, b, "10.00"))
    assert event_count() == before


def test_a_fee_that_eats_the_whole_amount_is_refused(ledger: Ledger, asset: str) -> None:
    a, b = fee_pair(ledger, asset)
    set_rule(ledger, asset, "recipient", minimum=100)
    with pytest.raises(FeeExceedsAmount):
        ledger.transfer(TransferFunds(unique("t"), a, b, "1.00"))


def test_a_held_fee_follows_its_transfer(ledger: Ledger, asset: str) -> None:
    a, b = fee_pair(ledger, asset)
    set_rule(ledger, asset, "recipient", basis_points=0, fixed=0, minimum=100, maximum=100)
    posted, voided = unique("h"), unique("h")
    for transfer_id in (posted, voided):
        ledger.transfer(TransferFunds(transfer_id, a, b, "40.00", pending=True))
    assert ledger.account(a).pending_debits == 8000  # 39.00 + 1.00 fee, twice
    result = ledger.post_transfer(PostTransfer(posted, "30.00"))
    assert result["posted_amount"] == "29.00"
    assert ledger.post_transfer(PostTransfer(posted, "30.00")) == result  # a retry
    ledger.void_transfer(VoidTransfer(voided))
    account = ledger.account(a)
    assert (account.pending_debits, account.posted_debits) == (0, 3000)
    assert ledger.account(b).posted_credits == 2900
    assert ledger.account(fee_account_id(asset)).posted_credits == 100


def test_setting_the_same_rule_again_records_nothing(ledger: Ledger, asset: str, event_count: Any) -> None:
    fee_pair(ledger, asset)
    first = set_rule(ledger, asset, "sender")
    before = event_count()
    assert set_rule(ledger, asset, "sender") == first
    assert event_count() == before
    changed = set_rule(ledger, asset, "sender", basis_points=200)
    assert changed["basis_points"] == 200 and changed["position"] > first["position"]


def test_every_leg_of_a_transaction_is_charged(ledger: Ledger, asset: str) -> None:
    a, b = fee_pair(ledger, asset)
    set_rule(ledger, asset, "sender")
    result = ledger.transaction(
        ExecuteTransaction(
            unique("tx"), (TransferFunds(unique("l"), a, b, "50.00"), TransferFunds(unique("l"), a, b, "10.00"))
        )
    )
    assert [t["fee"]["amount"] for t in result["transfers"]] == ["0.75", "0.35"]
    assert ledger.account(a).available == 10000 - 6000 - 110
    assert ledger.account(fee_account_id(asset)).posted_credits == 110
