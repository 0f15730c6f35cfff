"""The query HTTP API in-process over the real MongoDB-protocol server."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import falcon.testing
import pytest

from auth.store import KeyStore
from commands.application import Books
from contracts.events import LedgerEvent
from contracts.readmodel import watermark
from projectors.views import ReadModelWriter
from queries.http import create_app
from queries.parameters import MAX_POSITION
from tests.conftest import api_client, unique


def event(kind: str, subject: str, sequence: int, position: int, **data: Any) -> LedgerEvent:
    return LedgerEvent(unique("e"), f"ledger.{kind}.v1", subject, sequence, position, "2026-01-01T00:00:00+00:00", data)


def unbounded_head() -> int:
    """The read models here are written by hand, not from the event store: no position is beyond it."""
    return MAX_POSITION


@pytest.fixture
def writer(mongo_db: Any) -> ReadModelWriter:
    writer = ReadModelWriter(mongo_db)
    writer.create_indexes()
    return writer


@pytest.fixture
def client(mongo_db: Any, keys: KeyStore, admin_token: str) -> falcon.testing.TestClient:
    return api_client(create_app(mongo_db, wait_seconds=0.3, keys=keys, head=unbounded_head), admin_token)


def open_account(writer: ReadModelWriter, account: str, position: int) -> None:
    writer.apply(
        event(
            "account.opened",
            account,
            1,
            position,
            account=account,
            asset="USD/2",
            overdraft_limit="0",
            system=False,
            metadata={},
        )
    )


def test_min_position_waits_for_the_watermark_then_answers(
    client: falcon.testing.TestClient, writer: ReadModelWriter
) -> None:
    open_account(writer, "A", 5)
    result = client.simulate_get("/v1/accounts/A", params={"min_position": "5"})
    assert result.status_code == 503
    assert result.headers["retry-after"] == "1"
    assert result.json["code"] == "not_yet_visible"
    writer.raise_watermark(5)
    started = time.monotonic()
    result = client.simulate_get("/v1/accounts/A", params={"min_position": "5"})
    assert result.status_code == 200
    assert time.monotonic() - started < 0.3
    assert result.json["balance"]["available"] == "0.00"


def test_the_watermark_never_goes_back(writer: ReadModelWriter, mongo_db: Any) -> None:
    writer.raise_watermark(9)
    writer.raise_watermark(4)
    assert watermark(mongo_db) == 9


def test_entries_are_newest_first_with_a_cursor(client: falcon.testing.TestClient, writer: ReadModelWriter) -> None:
    open_account(writer, "A", 1)
    kinds = ["account.credited", "account.credited", "account.debited", "account.credited", "account.debited"]
    for version, kind in enumerate(kinds, start=2):
        writer.apply(
            event(kind, "A", version, version * 10, account="A", transfer=f"t{version}", asset="USD/2", amount="100")
        )
    first = client.simulate_get("/v1/accounts/A/entries", params={"limit": "3"}).json
    assert [e["transfer_id"] for e in first["entries"]] == ["t6", "t5", "t4"]
    rest = client.simulate_get("/v1/accounts/A/entries", params={"limit": "3", "cursor": first["next_cursor"]}).json
    assert [e["transfer_id"] for e in rest["entries"]] == ["t3", "t2"]
    assert rest["next_cursor"] is None
    assert rest["entries"][-1]["balance_after"] == "1.00"


def test_a_redelivered_event_changes_nothing(client: falcon.testing.TestClient, writer: ReadModelWriter) -> None:
    open_account(writer, "A", 1)
    credit = event("account.credited", "A", 2, 2, account="A", transfer="t", asset="USD/2", amount="250")
    writer.apply(credit)
    writer.apply(credit)
    body = client.simulate_get("/v1/accounts/A").json
    assert body["balance"]["posted_credits"] == "2.50"
    assert len(client.simulate_get("/v1/accounts/A/entries").json["entries"]) == 1


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/v1/accounts/nobody", {}, 404, "account_not_found"),
        ("/v1/accounts/nobody/entries", {}, 404, "account_not_found"),
        ("/v1/transfers/nothing", {}, 404, "transfer_not_found"),
        ("/v1/accounts/A", {"min_position": "-1"}, 400, "invalid_request"),
        ("/v1/accounts/A", {"min_position": "x"}, 400, "invalid_request"),
        ("/v1/accounts/A/entries", {"limit": "0"}, 400, "invalid_request"),
        ("/v1/accounts/A/entries", {"limit": "501"}, 400, "invalid_request"),
        ("/v1/accounts/A/entries", {"cursor": "garbage"}, 400, "invalid_request"),
        ("/v1/accounts/A/entries", {"limit": "²"}, 400, "invalid_request"),
        ("/v1/accounts/A", {"min_position": "²"}, 400, "invalid_request"),
        ("/v1/accounts/A", {"min_position": "9" * 5000}, 400, "invalid_request"),
    ],
)
def test_bad_queries_get_problems(
    client: falcon.testing.TestClient,
    writer: ReadModelWriter,
    path: str,
    params: dict[str, str],
    status: int,
    code: str,
) -> None:
    open_account(writer, "A", 1)
    result = client.simulate_get(path, params=params)
    assert result.status_code == status
    assert result.headers["content-type"] == "application/problem+json"
    assert result.json["code"] == code


def test_min_position_answers_as_soon_as_the_watermark_arrives(
    client: falcon.testing.TestClient, writer: ReadModelWriter, mongo_db: Any, keys: KeyStore, admin_token: str
) -> None:
    open_account(writer, "A", 7)
    slow = api_client(create_app(mongo_db, wait_seconds=5, keys=keys, head=unbounded_head), admin_token)
    timer = threading.Timer(0.3, writer.raise_watermark, args=(7,))
    timer.start()
    started = time.monotonic()
    result = slow.simulate_get("/v1/accounts/A", params={"min_position": "7"})
    waited = time.monotonic() - started
    timer.join()
    assert result.status_code == 200
    assert 0.25 < waited < 2


def test_any_client_metadata_survives_the_read_model(
    client: falcon.testing.TestClient, writer: ReadModelWriter
) -> None:
    metadata = {"$set": {"a.b": 2**70}, "nul": "\u0000", "deep": [[[{"x": -1.5}]]]}
    writer.apply(
        event(
            "account.opened",
            "M",
            1,
            1,
            account="M",
            asset="USD/2",
            overdraft_limit="0",
            system=False,
            metadata=metadata,
        )
    )
    assert client.simulate_get("/v1/accounts/M").json["metadata"] == metadata


def test_status_shows_how_far_each_stage_has_got(client: falcon.testing.TestClient, writer: ReadModelWriter) -> None:
    assert client.simulate_get("/v1/status").json["lag"] == 0
    writer.record_relay(40, 42)
    writer.record_relay(30, 35)  # an older report never moves it back
    writer.raise_watermark(38)
    status = client.simulate_get("/v1/status").json
    assert (status["event_store_head"], status["relay_position"], status["read_model_position"], status["lag"]) == (
        42,
        40,
        38,
        4,
    )


@pytest.mark.parametrize(
    "params",
    [
        {"at": "yesterday"},
        {"at": "2026-01-01T00:00:00"},
        {"at_position": "-3"},
        {"at_position": "1", "at": "2026-01-01T00:00:00Z"},
    ],
)
def test_bad_points_in_time_are_refused(
    client: falcon.testing.TestClient, writer: ReadModelWriter, params: dict[str, str]
) -> None:
    open_account(writer, "A", 1)
    result = client.simulate_get("/v1/accounts/A", params=params)
    assert (result.status_code, result.json["code"]) == (400, "invalid_request")


def test_a_point_in_time_with_an_unencoded_plus(client: falcon.testing.TestClient, writer: ReadModelWriter) -> None:
    open_account(writer, "A", 1)
    result = client.simulate_get("/v1/accounts/A", query_string="at=2026-06-01T00:00:00+00:00")
    assert result.status_code == 200
    assert result.json["balance"]["available"] == "0.00"


@pytest.mark.parametrize(
    ("path", "query_string", "parameter"),
    [
        ("/v1/accounts/A", "at_position=99999999999999999999", "at_position"),
        ("/v1/accounts/A", f"at_position={2**63}", "at_position"),
        ("/v1/accounts/A", f"min_position={2**63}", "min_position"),
        ("/v1/accounts/A", "at=9999-12-31T23:59:59-01:00", "at"),
        ("/v1/accounts/A", "at=0001-01-01T00:00:00%2B00:01", "at"),
        ("/v1/accounts/A", "at=2026-13-01T00:00:00Z", "at"),
        ("/v1/accounts/A", "at=2026-01-01T00:00:60Z", "at"),
        ("/v1/accounts/A", "at=%EF%BC%92026-01-01T00:00:00Z", "at"),  # a full-width digit
        ("/v1/accounts/A", "at=", "at"),
        ("/v1/accounts/A/entries", "cursor=eyJ2IjogOTk5OTk5OTk5OTk5OTk5OTk5OTl9", "cursor"),  # {"v": 10**20 - 1}
        ("/v1/accounts/A/entries", "cursor=eyJ2IjogOTIyMzM3MjAzNjg1NDc3NTgwOH0", "cursor"),  # {"v": 2**63}
        ("/v1/accounts/A/entries", "cursor=" + "QUFB" * 100, "cursor"),
        ("/v1/accounts/A/entries", "cursor=", "cursor"),
        ("/v1/accounts/A/entries", "limit=", "limit"),
        ("/v1/accounts/A/entries", "limit=1&limit=2", "limit"),
        ("/v1/accounts/A", "min_position=1&min_position=1", "min_position"),
        ("/v1/accounts/A", "at_postion=5", "at_postion"),
        ("/v1/accounts/A/entries", "at=2026-01-01T00:00:00Z", "at"),
        ("/v1/transfers/t", "limit=5", "limit"),
        ("/v1/payouts/p", "cursor=x", "cursor"),
        ("/v1/status", "verbose=1", "verbose"),
    ],
)
def test_out_of_range_and_unknown_parameters_are_400s_naming_them(
    client: falcon.testing.TestClient, writer: ReadModelWriter, path: str, query_string: str, parameter: str
) -> None:
    open_account(writer, "A", 1)
    writer.raise_watermark(1)
    result = client.simulate_get(path, query_string=query_string)
    assert result.status_code == 400, result.text
    assert result.headers["content-type"] == "application/problem+json"
    assert result.json["code"] == "invalid_request"
    assert parameter in result.json["detail"]


@pytest.mark.parametrize(
    ("query_string", "status"),
    [
        (f"at_position={2**63 - 1}", 200),  # the largest position there can be
        ("at=9999-12-31T23:59:59Z", 200),
        ("at=9999-12-31T23:59:59.999999999%2B23:59", 200),
        ("at=2026-06-01 00:00:00Z", 200),  # RFC 3339 allows a space for the "T"
        ("at=2026-06-01t00:00:00z", 200),
        ("at=1970-01-01T00:00:00Z", 404),  # the account did not exist yet
        ("at=0001-01-01T00:00:00-00:01", 404),
    ],
)
def test_points_in_time_at_the_edges_of_the_range(
    client: falcon.testing.TestClient, writer: ReadModelWriter, query_string: str, status: int
) -> None:
    open_account(writer, "A", 1)
    result = client.simulate_get("/v1/accounts/A", query_string=query_string)
    assert result.status_code == status, result.text
    if status == 404:
        assert result.json["code"] == "account_not_found"


def test_the_largest_cursor_is_a_page_not_an_error(client: falcon.testing.TestClient, writer: ReadModelWriter) -> None:
    open_account(writer, "A", 1)
    writer.apply(event("account.credited", "A", 2, 2, account="A", transfer="t2", asset="USD/2", amount="100"))
    largest = base64.urlsafe_b64encode(json.dumps({"v": 2**63 - 1}).encode()).decode().rstrip("=")
    result = client.simulate_get("/v1/accounts/A/entries", params={"cursor": largest})
    assert result.status_code == 200
    assert [e["transfer_id"] for e in result.json["entries"]] == ["t2"]


def test_min_position_waits_are_capped_and_the_next_one_is_told_to_retry(
    writer: ReadModelWriter, mongo_db: Any, keys: KeyStore, admin_token: str
) -> None:
    """Two may wait at once; a third that would wait is answered 503 busy at once, while a
    request whose position is already applied needs no slot."""
    open_account(writer, "A", 1)
    writer.raise_watermark(1)
    app = create_app(mongo_db, wait_seconds=2, keys=keys, max_waiters=2, head=unbounded_head)

    def get(min_position: int) -> falcon.testing.Result:
        return api_client(app, admin_token).simulate_get("/v1/accounts/A", params={"min_position": min_position})

    answers: list[int] = []
    waiting = [threading.Thread(target=lambda: answers.append(get(99).status_code)) for _ in range(2)]
    for thread in waiting:
        thread.start()
    time.sleep(0.5)  # both are waiting now, for a position that does not come
    started = time.monotonic()
    third = get(99)
    refused_in = time.monotonic() - started
    visible = get(1)
    for thread in waiting:
        thread.join()
    assert (third.status_code, third.json["code"], third.headers["retry-after"]) == (503, "busy", "1")
    assert refused_in < 1.0, "the third was refused at once, not after a wait"
    assert visible.status_code == 200
    assert sorted(answers) == [503, 503]  # the two waiters gave up: not_yet_visible

    timer = threading.Timer(0.3, writer.raise_watermark, args=(99,))
    timer.start()
    after = get(99)  # the slots were given back: this one waits, and sees the position come
    timer.join()
    assert after.status_code == 200


def test_no_waiters_means_min_position_never_waits(
    writer: ReadModelWriter, mongo_db: Any, keys: KeyStore, admin_token: str
) -> None:
    open_account(writer, "A", 1)
    writer.raise_watermark(1)
    client = api_client(
        create_app(mongo_db, wait_seconds=5, keys=keys, max_waiters=0, head=unbounded_head), admin_token
    )
    started = time.monotonic()
    result = client.simulate_get("/v1/accounts/A", params={"min_position": "2"})
    assert (result.status_code, result.json["code"]) == (503, "busy")
    assert time.monotonic() - started < 2
    assert client.simulate_get("/v1/accounts/A", params={"min_position": "1"}).status_code == 200


def test_a_min_position_no_write_has_reached_is_refused_at_once(
    mongo_db: Any, keys: KeyStore, admin_token: str, writer: ReadModelWriter, books: Books
) -> None:
    """Waiting for it could only end in a 503; the event store's head says so at once."""
    open_account(writer, "A", 1)
    client = api_client(create_app(mongo_db, wait_seconds=5, keys=keys), admin_token)
    beyond = books.head_position() + 1_000_000
    started = time.monotonic()
    result = client.simulate_get("/v1/accounts/A", params={"min_position": str(beyond)})
    assert (result.status_code, result.json["code"]) == (400, "invalid_request")
    assert "beyond the event store's last position" in result.json["detail"]
    assert time.monotonic() - started < 2
