"""The query HTTP API in-process over the real MongoDB-protocol server."""

from __future__ import annotations

import threading
import time
from typing import Any

import falcon.testing
import pytest

from auth.store import KeyStore
from projectors.messages import LedgerEvent
from projectors.views import ReadModelWriter
from queries.http import create_app
from queries.readmodel import watermark
from tests.conftest import api_client, unique


def event(kind: str, subject: str, sequence: int, position: int, **data: Any) -> LedgerEvent:
    return LedgerEvent(unique("e"), f"ledger.{kind}.v1", subject, sequence, position, "2026-01-01T00:00:00+00:00", data)


@pytest.fixture
def writer(mongo_db: Any) -> ReadModelWriter:
    writer = ReadModelWriter(mongo_db)
    writer.create_indexes()
    return writer


@pytest.fixture
def client(mongo_db: Any, keys: KeyStore, admin_token: str) -> falcon.testing.TestClient:
    return api_client(create_app(mongo_db, wait_seconds=0.3, keys=keys), admin_token)


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
    slow = api_client(create_app(mongo_db, wait_seconds=5, keys=keys), admin_token)
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
