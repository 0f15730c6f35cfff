"""Atomic multi-leg transactions: every leg applies or none does."""

from __future__ import annotations

from typing import Any

import falcon.testing
import pytest

from auth.store import KeyStore
from commands.application import Ledger
from commands.http import create_app
from commands.messages import Deposit, ExecuteTransaction, OpenAccount, PostTransfer, TransferFunds
from ledger.errors import IdConflict, InsufficientFunds
from tests.conftest import api_client, unique


def accounts(ledger: Ledger, n: int, fund: str = "100.00") -> list[str]:
    ids = [unique("X") for _ in range(n)]
    for account in ids:
        ledger.open_account(OpenAccount(account, "USD/2"))
    ledger.deposit(Deposit(unique("d"), ids[0], fund))
    return ids


def leg(debit: str, credit: str, amount: str, **extra: Any) -> TransferFunds:
    return TransferFunds(unique("leg"), debit, credit, amount, **extra)


def test_a_payment_plus_fee_applies_together(ledger: Ledger) -> None:
    payer, merchant, fees = accounts(ledger, 3)
    result = ledger.transaction(
        ExecuteTransaction(unique("tx"), (leg(payer, merchant, "50.00"), leg(payer, fees, "1.50")))
    )
    assert [t["amount"] for t in result["transfers"]] == ["50.00", "1.50"]
    assert ledger.account(payer).available == 10000 - 5150
    assert (ledger.account(merchant).available, ledger.account(fees).available) == (5000, 150)


def test_if_one_leg_fails_nothing_is_written(ledger: Ledger, event_count: Any) -> None:
    payer, merchant, fees = accounts(ledger, 3)
    before = event_count()
    with pytest.raises(InsufficientFunds, match=r"^transfers\[1\]: "):
        ledger.transaction(ExecuteTransaction(unique("tx"), (leg(payer, merchant, "99.00"), leg(payer, fees, "1.01"))))
    assert event_count() == before
    assert ledger.account(payer).available == 10000


def test_later_legs_see_earlier_ones(ledger: Ledger) -> None:
    a, b, c = accounts(ledger, 3)
    ledger.transaction(ExecuteTransaction(unique("tx"), (leg(a, b, "100.00"), leg(b, c, "100.00"))))
    assert [ledger.account(x).available for x in (a, b, c)] == [0, 0, 10000]


def test_a_settlement_split_between_parties_mixing_pending_and_posted(ledger: Ledger) -> None:
    escrow, seller, platform, courier = accounts(ledger, 4)
    held = leg(escrow, courier, "10.00", pending=True)
    result = ledger.transaction(
        ExecuteTransaction(unique("tx"), (leg(escrow, seller, "85.00"), leg(escrow, platform, "5.00"), held))
    )
    assert [t["status"] for t in result["transfers"]] == ["posted", "posted", "pending"]
    assert ledger.account(escrow).available == 0
    ledger.post_transfer(PostTransfer(held.id))
    assert ledger.account(courier).available == 1000


def test_a_retry_returns_the_same_result_and_a_changed_one_conflicts(ledger: Ledger, event_count: Any) -> None:
    a, b = accounts(ledger, 2)
    legs = (leg(a, b, "1.0"), leg(a, b, "2.00"))
    command = ExecuteTransaction(unique("tx"), legs)
    first = ledger.transaction(command)
    before = event_count()
    assert ledger.transaction(ExecuteTransaction(command.id, (legs[0], TransferFunds(legs[1].id, a, b, "2")))) == first
    with pytest.raises(IdConflict):
        ledger.transaction(ExecuteTransaction(command.id, (legs[0], TransferFunds(legs[1].id, a, b, "2.01"))))
    with pytest.raises(IdConflict, match=r"transfers\[0\]: transfer id .* is already used"):
        ledger.transaction(ExecuteTransaction(unique("tx"), (legs[0],)))
    assert event_count() == before


@pytest.fixture(scope="module")
def client(ledger: Ledger, keys: KeyStore, admin_token: str) -> falcon.testing.TestClient:
    return api_client(create_app(ledger, keys=keys), admin_token)


def test_transactions_over_http(client: falcon.testing.TestClient, ledger: Ledger, event_count: Any) -> None:
    a, b, c = accounts(ledger, 3)
    body = {
        "id": unique("tx"),
        "transfers": [
            {"id": unique("l"), "debit_account": a, "credit_account": b, "amount": "10.00"},
            {"id": unique("l"), "debit_account": a, "credit_account": c, "amount": "0.30", "metadata": {"fee": True}},
        ],
    }
    created = client.simulate_post("/v1/transactions", json=body)
    assert created.status_code == 201
    assert created.json["transfers"][1]["metadata"] == {"fee": True}
    before = event_count()
    cases = [
        ({"id": unique("tx"), "transfers": []}, 400, "invalid_request", "list of 1 to 100"),
        ({"id": unique("tx"), "transfers": [body["transfers"][0]] * 101}, 400, "invalid_request", "list of 1 to 100"),
        (
            {"id": unique("tx"), "transfers": [body["transfers"][0], body["transfers"][0]]},
            400,
            "invalid_request",
            "distinct",
        ),
        (
            {"id": unique("tx"), "transfers": [{"id": "x", "debit_account": a}]},
            400,
            "invalid_request",
            "transfers[0]: missing",
        ),
        (
            {"id": unique("tx"), "transfers": [body["transfers"][0] | {"id": "n", "amount": "1e2"}]},
            400,
            "invalid_amount",
            "transfers[0]",
        ),
        (
            {"id": unique("tx"), "transfers": [body["transfers"][0] | {"id": "n2", "credit_account": "ghost"}]},
            404,
            "account_not_found",
            "transfers[0]",
        ),
        ({"id": unique("tx"), "transfers": "all"}, 400, "invalid_request", "list"),
        ({"id": body["id"], "transfers": body["transfers"][:1]}, 409, "id_conflict", "different body"),
    ]
    for case, status, code, detail in cases:
        result = client.simulate_post("/v1/transactions", json=case)
        assert (result.status_code, result.json["code"]) == (status, code), result.json
        assert detail in result.json["detail"]
    assert event_count() == before
