"""Fee rules applied to transfers: legs in the same atomic write, shown in the results.

Here, what needs PostgreSQL or HTTP: the rules over HTTP, and rules changed by another
process. The rules themselves run on the in-memory store in
``tests/unit/handlers/test_fees.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from auth.store import KeyStore
from commands.application import Books
from commands.event_store import event_store_env
from commands.handlers.context import Writer
from commands.http import create_app
from commands.messages import (
    TransferFunds,
)
from ledger.ids import fee_account_id
from tests.conftest import Urls, api_client, unique
from tests.scenarios import fee_pair, set_rule


@pytest.fixture
def asset(books: Books) -> Iterator[str]:
    """A fresh asset per test, so its fee rule applies to this test only."""
    yield f"F{unique('x')[-8:].upper()}/2"


def test_fee_rules_over_http(books: Books, asset: str, event_count: Any, keys: KeyStore, admin_token: str) -> None:
    client = api_client(create_app(books, keys=keys), admin_token)
    a, b = fee_pair(books, asset)
    rule = client.simulate_post(
        "/v1/fee-rules",
        json={
            "asset": asset,
            "operation": "transfer",
            "basis_points": 50,
            "fixed": "0.10",
            "min": "0.20",
            "payer": "sender",
        },
    )
    assert (rule.status_code, rule.json["fee_account"]) == (200, fee_account_id(asset))
    paid = client.simulate_post(
        "/v1/transfers", json={"id": unique("t"), "debit_account": a, "credit_account": b, "amount": "10.00"}
    )
    assert paid.json["fee"]["amount"] == "0.20"
    before = event_count()
    for body, code in [
        ({"asset": asset, "operation": "refund", "payer": "sender"}, "invalid_request"),
        ({"asset": asset, "operation": "transfer", "payer": "nobody"}, "invalid_request"),
        ({"asset": asset, "operation": "transfer", "payer": "sender", "basis_points": 1.5}, "invalid_request"),
        ({"asset": asset, "operation": "transfer", "payer": "sender", "basis_points": 10_001}, "invalid_request"),
        ({"asset": asset, "operation": "transfer", "payer": "sender", "fixed": "0.001"}, "invalid_amount"),
        ({"asset": asset, "operation": "transfer", "payer": "sender", "min": "2", "max": "1"}, "invalid_request"),
        ({"asset": "usd", "operation": "transfer", "payer": "sender"}, "invalid_asset"),
    ]:
        result = client.simulate_post("/v1/fee-rules", json=body)
        assert (result.status_code, result.json["code"]) == (400, code), result.json
    assert event_count() == before


def test_a_rule_changed_while_a_transfer_runs_makes_it_run_again_with_the_new_rule(
    books: Books, servers: Urls, asset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = fee_pair(books, asset)
    set_rule(books, asset, "sender")
    other = Books(event_store_env(servers.settings()))
    read = Writer.fee_terms
    calls: list[int] = []

    def read_then_race(*args: Any) -> Any:
        terms = read(*args)
        if not calls:  # another writer deactivates the rule right after this read
            set_rule(other, asset, "sender", active=False)
        calls.append(1)
        return terms

    monkeypatch.setattr(Writer, "fee_terms", read_then_race)
    try:
        result = books.transfer(TransferFunds(unique("t"), a, b, "50.00"))
    finally:
        other.close()
    assert len(calls) == 2  # the first attempt was refused at commit
    assert "fee" not in result
    assert books.account(a).available == 5000


def test_a_rule_changed_by_another_process_applies_to_the_next_transfer(
    books: Books, servers: Urls, asset: str
) -> None:
    a, b = fee_pair(books, asset)
    set_rule(books, asset, "sender")
    assert books.transfer(TransferFunds(unique("t"), a, b, "10.00"))["fee"]["amount"] == "0.35"
    other = Books(event_store_env(servers.settings()))
    try:
        set_rule(other, asset, "sender", basis_points=0, fixed=5)
    finally:
        other.close()
    assert books.transfer(TransferFunds(unique("t"), a, b, "10.00"))["fee"]["amount"] == "0.05"
