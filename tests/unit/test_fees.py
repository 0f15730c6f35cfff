"""Fee terms: basis points plus a fixed part, kept within a minimum and a maximum; and fee
netting: who pays a transfer's fee, and what is left for the recipient."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import FeeExceedsAmount, InvalidRequest
from ledger.fees import FeeTerms, charge, charge_on_post


def test_basis_points_round_half_up_plus_the_fixed_part() -> None:
    terms = FeeTerms(basis_points=150, fixed=30, minimum=0, maximum=None, payer="sender")
    assert terms.fee(10_000) == 30 + 150
    assert terms.fee(33) == 30 + 0  # 0.495 rounds down
    assert terms.fee(34) == 30 + 1  # 0.51 rounds up


def test_minimum_and_maximum_bound_the_fee() -> None:
    terms = FeeTerms(basis_points=100, fixed=0, minimum=50, maximum=500, payer="recipient")
    assert (terms.fee(1), terms.fee(10_000), terms.fee(10**9)) == (50, 100, 500)


def test_an_inactive_rule_charges_nothing() -> None:
    assert FeeTerms(basis_points=100, fixed=5, minimum=5, maximum=None, payer="sender", active=False).fee(1000) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"basis_points": 10_001}, "basis_points"),
        ({"basis_points": -1}, "basis_points"),
        ({"payer": "bank"}, "payer"),
        ({"minimum": 10, "maximum": 5}, "maximum"),
    ],
)
def test_invalid_terms_are_refused(kwargs: dict[str, object], message: str) -> None:
    base = {"basis_points": 0, "fixed": 0, "minimum": 0, "maximum": None, "payer": "sender"} | kwargs
    with pytest.raises(InvalidRequest, match=message):
        FeeTerms(**base)  # type: ignore[arg-type]


@given(
    bps=st.integers(0, 10_000),
    fixed=st.integers(0, 10**6),
    minimum=st.integers(0, 10**6),
    extra=st.none() | st.integers(0, 10**6),
    a=st.integers(1, 10**12),
    b=st.integers(1, 10**12),
)
def test_the_fee_never_decreases_as_the_amount_grows(
    bps: int, fixed: int, minimum: int, extra: int | None, a: int, b: int
) -> None:
    """Posting a pending transfer for less can therefore never need more fee than was pending."""
    terms = FeeTerms(bps, fixed, minimum, None if extra is None else minimum + extra, "recipient")
    low, high = sorted((a, b))
    assert terms.fee(low) <= terms.fee(high)
    assert low - terms.fee(low) <= high - terms.fee(high)


# Netting (ledger.fees.charge, charge_on_post) ----------------------------------------

ASSET = "USD/2"


def terms(payer: str, *, basis_points: int = 50, fixed: int = 10, active: bool = True) -> FeeTerms:
    return FeeTerms(basis_points=basis_points, fixed=fixed, minimum=0, maximum=None, payer=payer, active=active)


def test_without_a_rule_the_whole_amount_moves_free() -> None:
    assert charge(10_000, None, ASSET) == (10_000, 0)


def test_the_sender_pays_on_top_of_the_amount() -> None:
    assert charge(10_000, terms("sender"), ASSET) == (10_000, 60)


def test_a_recipient_paid_fee_comes_out_of_what_the_recipient_gets() -> None:
    net, fee = charge(10_000, terms("recipient"), ASSET)
    assert (net, fee) == (9_940, 60)
    assert net + fee == 10_000


def test_an_inactive_rule_nets_nothing() -> None:
    assert charge(10_000, terms("recipient", active=False), ASSET) == (10_000, 0)


@pytest.mark.parametrize("amount", [10, 5])
def test_a_recipient_paid_fee_that_leaves_nothing_is_refused(amount: int) -> None:
    with pytest.raises(FeeExceedsAmount, match="leaves nothing of 0.(10|05)"):
        charge(amount, terms("recipient"), ASSET)


def test_a_sender_paid_fee_larger_than_the_amount_is_still_charged() -> None:
    assert charge(5, terms("sender"), ASSET) == (5, 10)


def test_a_partial_post_pays_the_fee_on_the_posted_gross() -> None:
    assert charge_on_post(4_000, terms("sender"), ASSET) == (4_000, 30)
    assert charge_on_post(4_000, terms("recipient"), ASSET) == (3_970, 30)


def test_a_post_may_leave_the_recipient_nothing_but_not_less() -> None:
    assert charge_on_post(10, terms("recipient"), ASSET) == (0, 10)
    with pytest.raises(FeeExceedsAmount, match="is more than 0.05"):
        charge_on_post(5, terms("recipient"), ASSET)
