"""Money parsing is strict and exact: integers in minor units, no floats anywhere."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import InvalidAmount, InvalidAsset
from ledger.money import MAX_AMOUNT, MAX_SCALE, Asset

USD = Asset.parse("USD/2")


@pytest.mark.parametrize(
    ("text", "minor"),
    [("100.00", 10000), ("30", 3000), ("0.01", 1), ("12.3", 1230), ("0.10", 10)],
)
def test_parses_major_units_into_minor_units(text: str, minor: int) -> None:
    assert USD.parse_amount(text) == minor


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("1e3", "plain decimal"),
        ("-5", "plain decimal"),
        ("0", "greater than zero"),
        ("0.00", "greater than zero"),
        (12.5, "JSON number"),
        (12, "JSON number"),
        (None, "JSON null"),
        ("12.345", "at most 2"),
        (" 1", "plain decimal"),
        ("01", "plain decimal"),
        ("1.", "plain decimal"),
        (".5", "plain decimal"),
        ("+1", "plain decimal"),
        ("NaN", "plain decimal"),
        ("１", "plain decimal"),
    ],
)
def test_rejects_anything_but_a_positive_plain_decimal_string(value: object, fragment: str) -> None:
    with pytest.raises(InvalidAmount, match=fragment):
        USD.parse_amount(value)


def test_the_largest_amount_is_2_pow_127_minus_1_minor_units() -> None:
    top = Asset.parse("BIG/0")
    assert top.parse_amount(str(MAX_AMOUNT)) == MAX_AMOUNT
    with pytest.raises(InvalidAmount, match="maximum"):
        top.parse_amount(str(MAX_AMOUNT + 1))


@pytest.mark.parametrize("text", ["usd/2", "USD", "USD/-1", "USD/19", "USD/02", "/2", "U$D/2", "ABCDEFGHIJKLM/2", 5])
def test_rejects_unknown_asset_formats(text: object) -> None:
    with pytest.raises(InvalidAsset):
        Asset.parse(text)


@given(scale=st.integers(0, MAX_SCALE), minor=st.integers(1, MAX_AMOUNT))
def test_format_then_parse_is_the_identity(scale: int, minor: int) -> None:
    asset = Asset("X", scale)
    assert asset.parse_amount(asset.format(minor)) == minor


@given(scale=st.integers(0, MAX_SCALE), minor=st.integers(-MAX_AMOUNT, MAX_AMOUNT))
def test_format_keeps_sign_and_exactly_scale_fraction_digits(scale: int, minor: int) -> None:
    text = Asset("X", scale).format(minor)
    assert text.startswith("-") == (minor < 0)
    assert len(text.partition(".")[2]) == scale
