"""Payout resolution: the hold follows the outcome on chain."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledger.accounts import Account
from ledger.errors import PayoutResolved
from ledger.payouts import Payout, settle_hold
from ledger.system_accounts import SystemAccount
from ledger.transfers import POSTED, VOIDED, Transfer

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ASSET = "USD/2"
CLEARING = "$clearing:USD/2"


def payout_with_hold(amount: int = 2_500) -> tuple[Payout, Transfer, Account, SystemAccount]:
    """A funded account with ``amount`` held for a payout to the clearing account."""
    account = Account(account_id="alice", asset=ASSET, overdraft_limit=0, system=False, metadata={})
    account.credit("d1", 10_000)
    clearing = SystemAccount(CLEARING)
    hold = Transfer(
        transfer_id="payout:p1",
        kind="payout",
        debit_account="alice",
        credit_account=CLEARING,
        asset=ASSET,
        amount=amount,
        metadata={},
        pending=True,
    )
    account.hold_debit(hold.transfer_id, amount)
    clearing.hold_credit(hold.transfer_id, amount)
    payout = Payout(
        payout_id="p1",
        account="alice",
        asset=ASSET,
        amount=amount,
        destination="G" * 56,
        memo=None,
        hold_id="payout:p1",
    )
    return payout, hold, account, clearing


def settle(payout: Payout, hold: Transfer, account: Account, clearing: SystemAccount) -> None:
    sides = {account.account_id: account, CLEARING: clearing}
    settle_hold(payout, [hold], sides.__getitem__, NOW)


def test_a_confirmed_payout_posts_its_hold_in_full() -> None:
    payout, hold, account, clearing = payout_with_hold()
    payout.confirm("abc", 7)
    settle(payout, hold, account, clearing)
    assert (hold.status, hold.amount) == (POSTED, 2_500)
    assert account.available == 7_500
    assert type(clearing.events[-1]).__name__ == "PendingCreditPosted"
    assert clearing.events[-1].amount == 2_500  # type: ignore[attr-defined]


def test_a_failed_payout_voids_its_hold_and_the_money_is_back() -> None:
    payout, hold, account, clearing = payout_with_hold()
    payout.fail("destination has no trustline")
    settle(payout, hold, account, clearing)
    assert hold.status == VOIDED
    assert account.available == 10_000
    assert type(clearing.events[-1]).__name__ == "PendingCreditVoided"


def test_an_unresolved_payout_settles_nothing() -> None:
    payout, hold, account, clearing = payout_with_hold()
    with pytest.raises(ValueError):
        settle(payout, hold, account, clearing)
    assert hold.pending_amount == 2_500 and hold.status != POSTED


def test_a_payout_ends_one_way_only() -> None:
    payout, *_ = payout_with_hold()
    payout.confirm("abc", 7)
    with pytest.raises(PayoutResolved):
        payout.fail("too late")
