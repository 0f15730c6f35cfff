"""The command HTTP API in-process (falcon's test client) over the real event store.

Every bad input gets a 4xx problem+json with a stable code and a clear detail, and
writes nothing: the event store's row count is the witness.
"""

from __future__ import annotations

import json
from typing import Any

import falcon.testing
import pytest

from commands.application import Ledger
from commands.http import create_app
from tests.conftest import unique


@pytest.fixture(scope="module")
def client(ledger: Ledger) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(ledger))


@pytest.fixture
def funded(client: falcon.testing.TestClient) -> tuple[str, str]:
    a, b = unique("A"), unique("B")
    for account in (a, b):
        assert client.simulate_post("/v1/accounts", json={"id": account, "asset": "USD/2"}).status_code == 201
    assert (
        client.simulate_post("/v1/deposits", json={"id": unique("d"), "account": a, "amount": "100.00"}).status_code
        == 201
    )
    return a, b


def post_raw(client: falcon.testing.TestClient, path: str, body: bytes, content_type: str = "application/json") -> Any:
    return client.simulate_post(path, body=body, headers={"Content-Type": content_type})


def assert_problem(result: Any, status: int, code: str, detail_fragment: str) -> None:
    assert result.status_code == status, result.text
    assert result.headers["content-type"] == "application/problem+json"
    problem = result.json
    assert problem["status"] == status
    assert problem["code"] == code
    assert detail_fragment in problem["detail"]


def test_a_transfer_answers_201_with_status_and_position(
    client: falcon.testing.TestClient, funded: tuple[str, str]
) -> None:
    a, b = funded
    result = client.simulate_post(
        "/v1/transfers", json={"id": unique("t"), "debit_account": a, "credit_account": b, "amount": "30.00"}
    )
    assert result.status_code == 201
    assert result.json["status"] == "posted"
    assert result.json["amount"] == "30.00"
    assert isinstance(result.json["position"], int)


def test_a_retry_gets_the_same_answer_and_a_changed_retry_gets_409(
    client: falcon.testing.TestClient, funded: tuple[str, str], event_count: Any
) -> None:
    a, b = funded
    body = {"id": unique("t"), "debit_account": a, "credit_account": b, "amount": "30.00"}
    first = client.simulate_post("/v1/transfers", json=body)
    before = event_count()
    again = client.simulate_post("/v1/transfers", json=body)
    assert (again.status_code, again.json) == (201, first.json)
    assert_problem(
        client.simulate_post("/v1/transfers", json=body | {"amount": "31.00"}), 409, "id_conflict", body["id"]
    )
    assert event_count() == before


BAD_TRANSFERS = [
    (b'{"id": "x", ', 400, "invalid_request", "not valid JSON"),
    (b"[]", 400, "invalid_request", "JSON object"),
    (b"", 400, "invalid_request", "empty"),
    (b'{"id": "t"}', 400, "invalid_request", "missing field(s): amount, credit_account, debit_account"),
    (
        b'{"id": "t", "debit_account": "A", "credit_account": "B", "amount": "1", "memo": "x"}',
        400,
        "invalid_request",
        "unknown field(s): memo",
    ),
    (b'{"id": "t", "debit_account": "{a}", "credit_account": "{b}", "amount": "1e3"}', 400, "invalid_amount", "'1e3'"),
    (b'{"id": "t", "debit_account": "{a}", "credit_account": "{b}", "amount": "-5"}', 400, "invalid_amount", "'-5'"),
    (
        b'{"id": "t", "debit_account": "{a}", "credit_account": "{b}", "amount": "0"}',
        400,
        "invalid_amount",
        "greater than zero",
    ),
    (
        b'{"id": "t", "debit_account": "{a}", "credit_account": "{b}", "amount": 12.5}',
        400,
        "invalid_amount",
        "not a JSON number",
    ),
    (
        b'{"id": "t", "debit_account": "{a}", "credit_account": "{b}", "amount": "12.345"}',
        400,
        "invalid_amount",
        "USD/2 allows at most 2",
    ),
    (
        b'{"id": "t", "debit_account": "{a}", "credit_account": "nobody", "amount": "1"}',
        404,
        "account_not_found",
        "'nobody'",
    ),
    (
        b'{"id": "t", "debit_account": "{a}", "credit_account": "{a}", "amount": "1"}',
        422,
        "same_account",
        "must differ",
    ),
    (
        b'{"id": "t", "debit_account": "{a}", "credit_account": "{b}", "amount": "100.01"}',
        422,
        "insufficient_funds",
        "100.00 available",
    ),
]


@pytest.mark.parametrize(("body", "status", "code", "detail"), BAD_TRANSFERS)
def test_bad_transfers_get_a_problem_and_write_nothing(
    client: falcon.testing.TestClient,
    funded: tuple[str, str],
    event_count: Any,
    body: bytes,
    status: int,
    code: str,
    detail: str,
) -> None:
    a, b = funded
    raw = body.replace(b"{a}", a.encode()).replace(b"{b}", b.encode()).replace(b'"t"', json.dumps(unique("t")).encode())
    before = event_count()
    assert_problem(post_raw(client, "/v1/transfers", raw), status, code, detail)
    assert event_count() == before


@pytest.mark.parametrize(
    ("body", "status", "code", "detail"),
    [
        ({"id": "x", "asset": "dollars"}, 400, "invalid_asset", "CODE/SCALE"),
        ({"id": "x", "asset": "USD/19"}, 400, "invalid_asset", "0..18"),
        ({"id": "x y", "asset": "USD/2"}, 400, "invalid_request", "id must be"),
        ({"id": "x", "asset": "USD/2", "overdraft_limit": "-1"}, 400, "invalid_amount", "'-1'"),
        ({"id": "x", "asset": "USD/2", "metadata": "note"}, 400, "invalid_request", "metadata must be a JSON object"),
        ({"id": "x", "asset": "USD/2", "metadata": {"k": "v" * 5000}}, 400, "invalid_request", "at most 4096 bytes"),
    ],
)
def test_bad_accounts_get_a_problem_and_write_nothing(
    client: falcon.testing.TestClient, event_count: Any, body: dict[str, Any], status: int, code: str, detail: str
) -> None:
    before = event_count()
    assert_problem(client.simulate_post("/v1/accounts", json=body), status, code, detail)
    assert event_count() == before


def test_a_deposit_to_an_unknown_account_is_404(client: falcon.testing.TestClient, event_count: Any) -> None:
    before = event_count()
    result = client.simulate_post("/v1/deposits", json={"id": unique("d"), "account": "ghost", "amount": "1.00"})
    assert_problem(result, 404, "account_not_found", "'ghost'")
    assert event_count() == before


def test_a_body_over_64_kib_is_413(client: falcon.testing.TestClient, event_count: Any) -> None:
    before = event_count()
    body = json.dumps({"id": "x", "asset": "USD/2", "metadata": {"k": "v" * 70_000}}).encode()
    assert_problem(post_raw(client, "/v1/accounts", body), 413, "body_too_large", "65536")
    assert event_count() == before


def test_a_non_json_content_type_is_415(client: falcon.testing.TestClient) -> None:
    assert_problem(
        post_raw(client, "/v1/accounts", b"id=x", "application/x-www-form-urlencoded"),
        415,
        "unsupported_media_type",
        "application/json",
    )


def test_unknown_routes_and_methods_are_problems_too(client: falcon.testing.TestClient) -> None:
    assert_problem(client.simulate_get("/v1/nothing"), 404, "not_found", "")
    assert_problem(client.simulate_get("/v1/transfers"), 405, "method_not_allowed", "")
