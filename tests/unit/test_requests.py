"""Request bodies are checked in one place, with messages that name the field."""

import pytest

from commands import requests
from ledger.errors import InvalidAmount, InvalidAsset, InvalidRequest
from runtime.web import parse_json


def test_unknown_fields_are_rejected_by_name() -> None:
    with pytest.raises(InvalidRequest, match="unknown field.*colour"):
        requests.open_account({"id": "A", "asset": "USD/2", "colour": "red"})


def test_missing_fields_are_listed() -> None:
    with pytest.raises(InvalidRequest, match="missing field.*amount, credit_account"):
        requests.transfer({"id": "t", "debit_account": "A"})


def test_duplicate_keys_are_rejected() -> None:
    with pytest.raises(InvalidRequest, match="more than once"):
        parse_json(b'{"id": "a", "id": "b"}')


@pytest.mark.parametrize("raw", [b"{", b"NaN", b'{"a": Infinity}', b"\xff"])
def test_malformed_json_is_rejected(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        parse_json(raw)


def test_a_non_object_body_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="JSON object"):
        requests.deposit(["id", "A"])


def test_overdraft_limit_is_parsed_at_the_assets_scale() -> None:
    command = requests.open_account({"id": "A", "asset": "EUR/2", "overdraft_limit": "5.5"})
    assert command.overdraft_limit == 550
    with pytest.raises(InvalidAmount):
        requests.open_account({"id": "A", "asset": "EUR/2", "overdraft_limit": "5.555"})


def test_asset_format_is_checked() -> None:
    with pytest.raises(InvalidAsset):
        requests.open_account({"id": "A", "asset": "dollars"})


@pytest.mark.parametrize("account_id", ["", "$issuance.USD.2", "a b", "x" * 129, 7, "-lead"])
def test_client_ids_are_restricted_and_system_ids_unreachable(account_id: object) -> None:
    with pytest.raises(InvalidRequest, match="account must be"):
        requests.deposit({"id": "d1", "account": account_id, "amount": "1"})


def test_amount_shape_is_checked_before_any_account_is_read() -> None:
    with pytest.raises(InvalidAmount):
        requests.deposit({"id": "d1", "account": "A", "amount": "-5"})
    with pytest.raises(InvalidAmount):
        requests.deposit({"id": "d1", "account": "A", "amount": "0.000"})


@pytest.mark.parametrize(
    "name", ["x - at `$.id`", "x - at `$.nope`", "x - at `$.metadata`", "x - at `$.transfers[9]`", "` - at `"]
)
def test_a_field_name_that_looks_like_a_path_is_refused_by_name(name: str) -> None:
    """msgspec quotes an unknown field's name before the path; the path is the last one."""
    body = {"id": "t", "debit_account": "a", "credit_account": "b", "amount": "1", name: 1}
    with pytest.raises(InvalidRequest, match="unknown field"):
        requests.transfer(body)
    with pytest.raises(InvalidRequest):
        requests.transaction({"id": "x", "transfers": [body]})


def test_policy_limits_are_shape_checked_before_any_account_is_read() -> None:
    with pytest.raises(InvalidAmount):
        requests.change_policy("a", {"daily_limit": "1\n"})
    assert requests.change_policy("a", {"daily_limit": None, "monthly_limit": "5.00"}).changes == {
        "daily_limit": None,
        "monthly_limit": "5.00",
    }
