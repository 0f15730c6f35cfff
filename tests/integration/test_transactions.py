"""Atomic multi-leg transactions: every leg applies or none does.

Here, what needs PostgreSQL or HTTP: the rules over HTTP. The rules themselves run on
the in-memory store in ``tests/unit/handlers/test_transactions.py``.
"""

from __future__ import annotations

from typing import Any

import falcon.testing
import pytest

from auth.store import KeyStore
from commands.application import Books
from commands.http import create_app
from tests.conftest import api_client, unique
from tests.scenarios import accounts


@pytest.fixture(scope="module")
def client(books: Books, keys: KeyStore, admin_token: str) -> falcon.testing.TestClient:
    return api_client(create_app(books, keys=keys), admin_token)


def test_transactions_over_http(client: falcon.testing.TestClient, books: Books, event_count: Any) -> None:
    a, b, c = accounts(books, 3)
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
