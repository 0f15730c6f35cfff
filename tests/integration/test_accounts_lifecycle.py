"""Account policy and lifecycle: overdraft limits, freeze/unfreeze, safe close.

Here, what needs PostgreSQL or HTTP: the rules over HTTP. The rules themselves run on
the in-memory store in ``tests/unit/handlers/test_accounts_lifecycle.py``.
"""

from __future__ import annotations

from typing import Any

import falcon.testing
import pytest

from auth.store import KeyStore
from commands.application import Books
from commands.http import create_app
from tests.conftest import api_client, unique
from tests.scenarios import funded_pair


@pytest.fixture(scope="module")
def client(books: Books, keys: KeyStore, admin_token: str) -> falcon.testing.TestClient:
    return api_client(create_app(books, keys=keys), admin_token)


def test_lifecycle_over_http(client: falcon.testing.TestClient, books: Books, event_count: Any) -> None:
    a, b = funded_pair(books)
    assert client.simulate_post(f"/v1/accounts/{a}/freeze").json["status"] == "frozen"
    refused = client.simulate_post(
        "/v1/transfers", json={"id": unique("t"), "debit_account": a, "credit_account": b, "amount": "1"}
    )
    assert (refused.status_code, refused.json["code"]) == (422, "account_not_open")
    assert client.simulate_post(f"/v1/accounts/{a}/unfreeze").json["status"] == "open"
    closing = client.simulate_post(f"/v1/accounts/{a}/close")
    assert (closing.status_code, closing.json["code"]) == (422, "account_not_empty")
    assert "balance is 10.00" in closing.json["detail"]
    policy = client.simulate_post(f"/v1/accounts/{b}/policy", json={"overdraft_limit": "2.50"})
    assert (policy.status_code, policy.json["overdraft_limit"]) == (200, "2.50")
    before = event_count()
    for path, body, status, code in [
        (f"/v1/accounts/{b}/policy", {}, 400, "invalid_request"),
        (f"/v1/accounts/{b}/policy", {"overdraft_limit": "-1"}, 400, "invalid_amount"),
        (f"/v1/accounts/{b}/policy", {"overdraft_limit": "1.001"}, 400, "invalid_amount"),
        (f"/v1/accounts/{b}/policy", {"overdraft_limit": "1", "daily": "2"}, 400, "invalid_request"),
        (f"/v1/accounts/{b}/freeze", {"now": True}, 400, "invalid_request"),
        ("/v1/accounts/ghost/freeze", None, 404, "account_not_found"),
        ("/v1/accounts/$issuance.USD.2/close", None, 400, "invalid_request"),
    ]:
        result = client.simulate_post(path, json=body)
        assert (result.status_code, result.json["code"]) == (status, code), (path, result.json)
    assert client.simulate_post(f"/v1/accounts/{b}/policy").status_code == 400  # a body is required
    assert event_count() == before
