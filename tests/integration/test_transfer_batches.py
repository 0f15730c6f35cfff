"""Transfer batches: independent transfers in one request and one write, each answered as
if it had been sent alone, in order.

Here, what needs PostgreSQL or HTTP: batches over HTTP. The rules themselves run on the
in-memory store in ``tests/unit/handlers/test_transfer_batches.py``.
"""

from __future__ import annotations

from typing import Any

import falcon.testing
import pytest

from auth.store import KeyStore
from commands.application import Books
from commands.http import create_app
from ledger.errors import AccountNotFound
from tests.conftest import api_client, unique
from tests.scenarios import accounts


@pytest.fixture(scope="module")
def client(books: Books, keys: KeyStore, admin_token: str) -> falcon.testing.TestClient:
    return api_client(create_app(books, keys=keys), admin_token)


def test_batches_over_http(client: falcon.testing.TestClient, books: Books, event_count: Any) -> None:
    a, b = accounts(books, 2)
    good = {"id": unique("t"), "debit_account": a, "credit_account": b, "amount": "10.00"}
    reply = client.simulate_post(
        "/v1/transfer-batches", json={"transfers": [good, {**good, "id": unique("t"), "amount": "95.00"}]}
    )
    assert reply.status_code == 200
    first, second = reply.json["results"]
    assert first["status"] == 201 and first["body"]["amount"] == "10.00"
    assert client.simulate_post("/v1/transfers", json=good).json == first["body"]
    assert second["status"] == 422 and second["body"]["code"] == "insufficient_funds"
    assert second["body"]["status"] == 422 and "available" in second["body"]["detail"]

    before = event_count()
    cases = [
        ({"transfers": []}, "invalid_request", "list of 1 to 100"),
        ({"transfers": [{**good, "id": unique("t")}] * 2}, "invalid_request", "distinct"),
        ({"transfers": [{**good, "id": f"t{n}"} for n in range(101)]}, "invalid_request", "list of 1 to 100"),
        ({"transfers": [{**good, "id": unique("t")}, {**good, "amount": 10}]}, "invalid_amount", "transfers[1]"),
        ({"transfers": [good], "extra": 1}, "invalid_request", "extra"),
        ([good], "invalid_request", "object"),
    ]
    for body, code, detail in cases:
        refused = client.simulate_post("/v1/transfer-batches", json=body)
        assert refused.status_code == 400, body
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json["code"] == code and detail in refused.json["detail"], refused.json
    assert event_count() == before
    with pytest.raises(AccountNotFound):
        books.account("ghost")
