"""Payout resolution: its pending transfer follows the outcome on chain."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledger.accounts import Account
from ledger.errors import PayoutResolved
from ledger.payouts import Payout, post_or_void
from ledger.system_accounts import SystemAccount
from ledger.transfers import POSTED, VOIDED, Transfer

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ASSET = "USD/2"
CLEARING = "$clearing:USD/2"


def payout_with_transfer(amount: int = 2_500) -> tuple[Payout, Transfer, Account, SystemAccount]:
    """A funded account with ``amount`` pending for a payout to the clearing account."""
    account = Account(account_id="alice", asset=ASSET, overdraft_limit=0, system=False, metadata={})
    account.credit("d1", 10_000)
    clearing = SystemAccount(CLEARING)
    transfer = Transfer(
        transfer_id="payout:p1",
        kind="payout",
        debit_account="alice",
        credit_account=CLEARING,
        asset=ASSET,
        amount=amount,
        metadata={},
        pending=True,
    )
    account.add_pending_debit(transfer.transfer_id, amount)
    clearing.add_pending_credit(transfer.transfer_id, amount)
    payout = Payout(
        payout_id="p1",
        account="alice",
        asset=ASSET,
        amount=amount,
        destination="G" * 56,
        memo=None,
        hold_id="payout:p1",
    )
    return payout, transfer, account, clearing


def resolve(payout: Payout, transfer: Transfer, account: Account, clearing: SystemAccount) -> None:
    sides = {account.account_id: account, CLEARING: clearing}
    post_or_void(payout, [transfer], sides.__getitem__, NOW)


def test_a_confirmed_payout_posts_its_transfer_in_full() -> None:
    payout, transfer, account, clearing = payout_with_transfer()
    payout.confirm("abc", 7)
    resolve(payout, transfer, account, clearing)
    assert (transfer.status, transfer.amount) == (POSTED, 2_500)
    assert account.available == 7_500
    assert type(clearing.events[-1]).__name__ == "PendingCreditPosted"
    assert clearing.events[-1].amount == 2_500  # type: ignore[attr-defined]


def test_a_failed_payout_voids_its_transfer_and_the_money_is_back() -> None:
    payout, transfer, account, clearing = payout_with_transfer()
    payout.fail("destination has no trustline")
    resolve(payout, transfer, account, clearing)
    assert transfer.status == VOIDED
    assert account.available == 10_000
    assert type(clearing.events[-1]).__name__ == "PendingCreditVoided"


def test_an_unresolved_payout_posts_and_voids_nothing() -> None:
    payout, transfer, account, clearing = payout_with_transfer()
    with pytest.raises(ValueError):
        resolve(payout, transfer, account, clearing)
    assert transfer.pending_amount == 2_500 and transfer.status != POSTED


def test_a_payout_ends_one_way_only() -> None:
    payout, *_ = payout_with_transfer()
    payout.confirm("abc", 7)
    with pytest.raises(PayoutResolved):
        payout.fail("too late")
