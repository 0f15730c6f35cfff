"""Transfer rules without a store: posting a pending transfer that carries a fee, reversing a transfer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.errors import ExceedsReversible, FeeExceedsAmount, TransferExpired, TransferNotPending, TransferNotPosted
from ledger.fees import FeeTerms
from ledger.transfers import EXPIRED, PENDING, POSTED, Transfer

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ASSET = "USD/2"


def pending_transfer(amount: int, payer: str | None = None, fee: int = 0) -> Transfer:
    """A pending transfer; with ``payer``, charged 0.50% plus 0.10 (its fee leg is separate)."""
    fee_terms = None
    if payer:
        fee_terms = FeeTerms(basis_points=50, fixed=10, minimum=0, maximum=None, payer=payer).as_dict()
    return made(amount, pending=True, fee=fee, fee_payer=payer, fee_terms=fee_terms)


def made(amount: int, **details: Any) -> Transfer:
    """Transfer "t1" from alice to bob; posted at once unless ``pending=True``."""
    return Transfer(
        transfer_id="t1",
        kind="transfer",
        debit_account="alice",
        credit_account="bob",
        asset=ASSET,
        amount=amount,
        metadata={},
        **details,
    )


def test_posting_without_a_fee_posts_what_is_asked() -> None:
    assert pending_transfer(10_000).posting(4_000) == (4_000, None)
    assert pending_transfer(10_000).posting(None) == (None, None)


def test_posting_a_pending_transfer_in_full_posts_the_fee_leg_in_full() -> None:
    assert pending_transfer(9_940, "recipient", fee=60).posting(None) == (None, None)


def test_a_partial_post_recomputes_the_fee_on_the_posted_gross() -> None:
    assert pending_transfer(10_000, "sender", fee=60).posting(4_000) == (4_000, 30)


def test_a_partial_post_deducts_a_recipient_paid_fee_from_the_gross() -> None:
    assert pending_transfer(9_940, "recipient", fee=60).posting(4_000) == (3_970, 30)


def test_a_partial_post_smaller_than_a_recipient_paid_fee_is_refused() -> None:
    with pytest.raises(FeeExceedsAmount):
        pending_transfer(9_940, "recipient", fee=60).posting(5)


def test_the_posted_gross_adds_back_the_fee_the_recipient_paid() -> None:
    transfer = pending_transfer(9_940, "recipient", fee=60)
    fee_leg = Transfer(
        transfer_id="fee:t1",
        kind="fee",
        debit_account="alice",
        credit_account="$fees",
        asset=ASSET,
        amount=60,
        metadata={},
        pending=True,
    )
    net, fee = transfer.posting(4_000)
    transfer.post(net, NOW)
    fee_leg.post(fee, NOW)
    assert transfer.posted_gross(fee_leg) == 4_000
    assert pending_transfer(10_000).posted_gross(None) == 0  # nothing posted yet


def test_a_reversal_sends_the_money_back_the_way_it_came() -> None:
    original = made(10_000)
    reversal = original.reversed_by("r1", None)
    assert (reversal.debit_account, reversal.credit_account) == ("bob", "alice")
    assert (reversal.kind, reversal.amount, reversal.reverses, reversal.status) == ("reversal", 10_000, "t1", POSTED)
    assert original.reversed_amount == 10_000


def test_partial_reversals_never_exceed_what_was_posted() -> None:
    original = made(10_000)
    assert original.reversed_by("r1", 4_000).amount == 4_000
    assert original.reversed_by("r2", None).amount == 6_000  # what is left
    with pytest.raises(ExceedsReversible):
        original.reversed_by("r3", 1)


def test_only_a_posted_transfer_reverses() -> None:
    pending = pending_transfer(10_000)
    assert pending.status == PENDING
    with pytest.raises(TransferNotPosted):
        pending.reversed_by("r1", None)


def test_a_pending_transfer_past_its_timeout_is_expired_before_and_after_the_expirer_voids_it() -> None:
    pending = made(500, pending=True, expires_at=NOW + timedelta(seconds=60))
    later = NOW + timedelta(seconds=61)
    for refuse in (lambda: pending.post(None, later), lambda: pending.void(later)):
        with pytest.raises(TransferExpired, match="expired at"):
            refuse()
    pending.expire(later)
    assert pending.status == EXPIRED
    for refuse in (
        lambda: pending.post(None, later),
        lambda: pending.void(later),
        lambda: pending.check_postable(later),
    ):
        with pytest.raises(TransferExpired, match="expired at"):
            refuse()


def test_a_voided_transfer_is_not_pending_any_more() -> None:
    pending = made(500, pending=True, expires_at=NOW + timedelta(seconds=60))
    pending.void(NOW)
    with pytest.raises(TransferNotPending, match="is voided"):
        pending.post(None, NOW)
