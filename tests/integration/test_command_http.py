"""The command HTTP API in-process (falcon's test client) over the real event store.

Every bad input gets a 4xx problem+json with a stable code and a clear detail, and
writes nothing: the event store's row count is the witness.
"""

from __future__ import annotations

import json
from typing import Any

import falcon.testing
import pytest

from auth.store import KeyStore
from commands.application import Books
from commands.http import create_app
from tests.conftest import api_client, unique


@pytest.fixture(scope="module")
def client(books: Books, keys: KeyStore, admin_token: str) -> falcon.testing.TestClient:
    return api_client(create_app(books, keys=keys), admin_token)


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


def hold(client: falcon.testing.TestClient, funded: tuple[str, str], amount: str) -> str:
    """A pending transfer from the first funded account to the second; its id."""
    a, b = funded
    transfer_id = unique("h")
    client.simulate_post(
        "/v1/transfers",
        json={"id": transfer_id, "debit_account": a, "credit_account": b, "amount": amount, "pending": True},
    )
    return transfer_id


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
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert_problem(
        client.simulate_post("/v1/transfers", json=body | {"amount": "31.00"}), 409, "id_conflict", body["id"]
    )
    assert event_count() == before


def test_every_kind_of_retried_write_says_it_was_replayed(
    client: falcon.testing.TestClient, funded: tuple[str, str], event_count: Any
) -> None:
    """Each write a client retries by its id: the first answer carries no header, the
    retry the same body with ``Idempotent-Replayed: true``, and writes nothing."""
    a, b = funded
    held, voided = hold(client, funded, "1.00"), hold(client, funded, "2.00")
    posted = unique("t")
    client.simulate_post("/v1/transfers", json={"id": posted, "debit_account": a, "credit_account": b, "amount": "3"})
    leg = {"debit_account": a, "credit_account": b, "amount": "1.00"}
    writes = [
        ("/v1/accounts", {"id": unique("A"), "asset": "USD/2"}),
        ("/v1/deposits", {"id": unique("d"), "account": a, "amount": "1.00"}),
        ("/v1/transactions", {"id": unique("x"), "transfers": [leg | {"id": unique("l")}]}),
        (f"/v1/transfers/{held}/post", None),
        (f"/v1/transfers/{voided}/void", None),
        (f"/v1/transfers/{posted}/reverse", {"id": unique("r"), "amount": "1.00"}),
    ]
    for path, body in writes:
        first = client.simulate_post(path, json=body) if body is not None else client.simulate_post(path)
        assert first.status_code in (200, 201), (path, first.text)
        assert "idempotent-replayed" not in first.headers, path
        before = event_count()
        again = client.simulate_post(path, json=body) if body is not None else client.simulate_post(path)
        assert (again.status_code, again.json) == (first.status_code, first.json), path
        assert again.headers.get("idempotent-replayed") == "true", path
        assert event_count() == before, path


def test_a_batch_marks_the_transfers_it_answers_again(
    client: falcon.testing.TestClient, funded: tuple[str, str]
) -> None:
    a, b = funded
    known = {"id": unique("t"), "debit_account": a, "credit_account": b, "amount": "1.00"}
    client.simulate_post("/v1/transfers", json=known)
    new = known | {"id": unique("t")}
    result = client.simulate_post("/v1/transfer-batches", json={"transfers": [known, new]})
    assert result.status_code == 200
    first, second = result.json["results"]
    assert (first["status"], first.get("replayed")) == (201, True)
    assert (second["status"], "replayed" in second) == (201, False)
    assert "idempotent-replayed" not in result.headers


def totals(posted_debits: str, posted_credits: str, pending_debits: str, available: str) -> dict[str, str]:
    return {
        "posted_debits": posted_debits,
        "posted_credits": posted_credits,
        "pending_debits": pending_debits,
        "pending_credits": "0.00",
        "available": available,
    }


def test_answers_carry_the_balances_they_leave_and_a_retry_the_same_ones(
    client: falcon.testing.TestClient, funded: tuple[str, str]
) -> None:
    """A client knows its balance from the answer; a retry answers as the first time
    even after the accounts moved on."""
    a, b = funded  # a holds 100.00
    body = {"id": unique("t"), "debit_account": a, "credit_account": b, "amount": "30.00"}
    first = client.simulate_post("/v1/transfers", json=body).json
    assert first["balances"] == {
        a: totals("30.00", "100.00", "0.00", "70.00"),
        b: totals("0.00", "30.00", "0.00", "30.00"),
    }
    held = client.simulate_post(
        "/v1/transfers", json=body | {"id": unique("h"), "amount": "20.00", "pending": True, "timeout_seconds": 60}
    ).json
    assert held["balances"][a] == totals("30.00", "100.00", "20.00", "50.00")
    assert held["balances"][b]["pending_credits"] == "20.00"
    posted = client.simulate_post(f"/v1/transfers/{held['id']}/post", json={"amount": "15.00"}).json
    assert posted["balances"][a] == totals("45.00", "100.00", "0.00", "55.00")
    deposit = {"id": unique("d"), "account": a, "amount": "1.00"}
    deposited = client.simulate_post("/v1/deposits", json=deposit).json
    assert deposited["balances"] == {a: totals("45.00", "101.00", "0.00", "56.00")}  # the issuance side is the ledger's

    # Later retries: the balances the first runs left, not today's.
    for path, sent, answer in [
        ("/v1/transfers", body, first),
        (f"/v1/transfers/{held['id']}/post", {"amount": "15.00"}, posted),
        ("/v1/deposits", deposit, deposited),
    ]:
        again = client.simulate_post(path, json=sent)
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json == answer, path

    batch = client.simulate_post(
        "/v1/transfer-batches", json={"transfers": [body, body | {"id": unique("t"), "amount": "6.00"}]}
    ).json["results"]
    assert batch[0]["body"] == first
    assert batch[1]["body"]["balances"][a] == totals("51.00", "101.00", "0.00", "50.00")

    leg = {"debit_account": a, "credit_account": b}
    transaction = {
        "id": unique("x"),
        "transfers": [leg | {"id": unique("l"), "amount": "1.00"}, leg | {"id": unique("l"), "amount": "2.00"}],
    }
    made = client.simulate_post("/v1/transactions", json=transaction).json
    assert made["balances"][a] == totals("54.00", "101.00", "0.00", "47.00")
    assert all("balances" not in t for t in made["transfers"])
    assert client.simulate_post("/v1/transactions", json=transaction).json == made


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


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": ""},  # a web page can send this cross-site without a CORS preflight
        {},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/json-seq"},
        {"Content-Type": "multipart/form-data; boundary=x"},
    ],
)
def test_a_body_not_labelled_json_is_415_and_moves_nothing(
    client: falcon.testing.TestClient, funded: tuple[str, str], event_count: Any, headers: dict[str, str]
) -> None:
    a, _ = funded
    body = json.dumps({"id": unique("d"), "account": a, "amount": "1.00"}).encode()
    before = event_count()
    assert_problem(
        client.simulate_post("/v1/deposits", body=body, headers=headers),
        415,
        "unsupported_media_type",
        "application/json",
    )
    assert event_count() == before
    assert (
        client.simulate_post(
            "/v1/deposits", body=body, headers={"Content-Type": "Application/JSON; charset=utf-8"}
        ).status_code
        == 201
    )


def test_an_optional_body_may_be_left_out_but_not_sent_unlabelled(
    client: falcon.testing.TestClient, funded: tuple[str, str]
) -> None:
    transfer_id = hold(client, funded, "1.00")
    unlabelled = client.simulate_post(f"/v1/transfers/{transfer_id}/post", body=b"{}", headers={"Content-Type": ""})
    assert_problem(unlabelled, 415, "unsupported_media_type", "application/json")
    voided = client.simulate_post(f"/v1/transfers/{transfer_id}/void", headers={"Content-Type": ""})
    assert (voided.status_code, voided.json["status"]) == (200, "voided")


def test_unknown_routes_and_methods_are_problems_too(client: falcon.testing.TestClient) -> None:
    assert_problem(client.simulate_get("/v1/nothing"), 404, "not_found", "")
    assert_problem(client.simulate_get("/v1/transfers"), 405, "method_not_allowed", "")


@pytest.mark.parametrize(
    ("raw", "code", "detail"),
    [
        (
            b'{"id": "x", "asset": "USD/2", "overdraft_limit": "' + b"9" * 5000 + b'"}',
            "invalid_amount",
            "at most 39 digits",
        ),
        (
            b'{"id": "x", "asset": "USD/2", "metadata": {"n": ' + b"9" * 5000 + b"}}",
            "invalid_request",
            "cannot be read",
        ),
        (b'{"id": "x", "asset": "USD/2", "metadata": ' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid_request", "nested"),
        (b'{"id": "x", "asset": "USD/2", "metadata": {"a": "\\ud800"}}', "invalid_request", "lone surrogate"),
        (
            b'{"id": "x", "asset": "USD/2", "metadata": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {}}}}}}}}}}',
            "invalid_request",
            "levels deep",
        ),
        (b'{"id": "x\\n", "asset": "USD/2"}', "invalid_request", "id must be"),
        (b'{"id": "x", "asset": "USD/2\\n"}', "invalid_asset", "CODE/SCALE"),
    ],
)
def test_hostile_bodies_are_refused_and_write_nothing(
    client: falcon.testing.TestClient, event_count: Any, raw: bytes, code: str, detail: str
) -> None:
    before = event_count()
    result = post_raw(client, "/v1/accounts", raw)
    assert 400 <= result.status_code < 500
    assert result.json["code"] == code
    assert detail in result.json["detail"]
    assert event_count() == before


def test_a_hold_is_posted_for_less_over_http(client: falcon.testing.TestClient, funded: tuple[str, str]) -> None:
    a, b = funded
    transfer_id = unique("h")
    held = client.simulate_post(
        "/v1/transfers",
        json={
            "id": transfer_id,
            "debit_account": a,
            "credit_account": b,
            "amount": "30.00",
            "pending": True,
            "timeout_seconds": 60,
        },
    )
    assert held.status_code == 201
    assert (held.json["status"], held.json["posted_amount"]) == ("pending", "0.00")
    assert held.json["expires_at"] is not None
    posted = client.simulate_post(f"/v1/transfers/{transfer_id}/post", json={"amount": "12.50"})
    assert posted.status_code == 200
    assert (posted.json["status"], posted.json["posted_amount"]) == ("posted", "12.50")
    assert posted.json["position"] > held.json["position"]
    again = client.simulate_post(f"/v1/transfers/{transfer_id}/void")
    assert_problem(again, 409, "transfer_not_pending", "posted")


def test_a_hold_is_voided_over_http_without_a_body(client: falcon.testing.TestClient, funded: tuple[str, str]) -> None:
    transfer_id = hold(client, funded, "1.00")
    voided = client.simulate_post(f"/v1/transfers/{transfer_id}/void")
    assert (voided.status_code, voided.json["status"], voided.json["expires_at"]) == (200, "voided", None)


@pytest.mark.parametrize(
    ("extra", "detail"),
    [
        ({"timeout_seconds": 10}, "only to a pending transfer"),
        ({"pending": "yes"}, "pending must be true or false"),
        ({"pending": True, "timeout_seconds": 0}, "timeout_seconds must be an integer"),
        ({"pending": True, "timeout_seconds": 1.5}, "timeout_seconds must be an integer"),
        ({"pending": True, "timeout_seconds": True}, "timeout_seconds must be an integer"),
    ],
)
def test_bad_holds_are_refused(
    client: falcon.testing.TestClient, funded: tuple[str, str], event_count: Any, extra: dict[str, Any], detail: str
) -> None:
    a, b = funded
    before = event_count()
    body = {"id": unique("h"), "debit_account": a, "credit_account": b, "amount": "1.00"} | extra
    assert_problem(client.simulate_post("/v1/transfers", json=body), 400, "invalid_request", detail)
    assert event_count() == before


@pytest.mark.parametrize(
    ("action", "body", "status", "code", "detail"),
    [
        ("post", {"amount": "-1"}, 400, "invalid_amount", "'-1'"),
        ("post", {"amount": "31.00"}, 422, "exceeds_pending", "cannot post 31.00"),
        ("post", {"amount": "1.001"}, 400, "invalid_amount", "at most 2"),
        ("post", {"amunt": "1"}, 400, "invalid_request", "unknown field(s): amunt"),
        ("void", {"reason": "x"}, 400, "invalid_request", "unknown field(s): reason"),
        ("post", [], 400, "invalid_request", "JSON object"),
    ],
)
def test_bad_posts_and_voids_write_nothing(
    client: falcon.testing.TestClient,
    funded: tuple[str, str],
    event_count: Any,
    action: str,
    body: Any,
    status: int,
    code: str,
    detail: str,
) -> None:
    transfer_id = hold(client, funded, "30.00")
    before = event_count()
    assert_problem(client.simulate_post(f"/v1/transfers/{transfer_id}/{action}", json=body), status, code, detail)
    assert event_count() == before


def test_posting_an_unknown_transfer_is_404(client: falcon.testing.TestClient) -> None:
    assert_problem(client.simulate_post("/v1/transfers/nope/post"), 404, "transfer_not_found", "'nope'")
