"""Daily and monthly outgoing limits, enforced atomically with the transfer; windows in
UTC.

Here, what needs PostgreSQL or HTTP: the rules over HTTP. The rules themselves run on
the in-memory store in ``tests/unit/handlers/test_limits.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from auth.store import KeyStore
from commands.application import Books
from commands.event_store import event_store_env
from commands.http import create_app
from tests.conftest import Clock, Urls, api_client, unique
from tests.scenarios import limited


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 1, 31, 23, 0, tzinfo=UTC))


@pytest.fixture
def books(servers: Urls, clock: Clock) -> Iterator[Books]:
    app = Books(event_store_env(servers.settings()), clock=clock)
    yield app
    app.close()


def test_limits_over_http(books: Books, event_count: Any, keys: KeyStore, admin_token: str) -> None:
    client = api_client(create_app(books, keys=keys), admin_token)
    a, b = limited(books, None, None)
    result = client.simulate_post(f"/v1/accounts/{a}/policy", json={"daily_limit": "5.00", "monthly_limit": "50.00"})
    assert (result.status_code, result.json["daily_limit"], result.json["monthly_limit"]) == (200, "5.00", "50.00")
    refused = client.simulate_post(
        "/v1/transfers", json={"id": unique("t"), "debit_account": a, "credit_account": b, "amount": "5.01"}
    )
    assert (refused.status_code, refused.json["code"]) == (422, "limit_exceeded")
    before = event_count()
    for body in ({}, {"daily_limit": "-1"}, {"overdraft_limit": None}, {"weekly_limit": "1"}, {"daily_limit": 5}):
        result = client.simulate_post(f"/v1/accounts/{a}/policy", json=body)
        assert result.status_code == 400, body
    assert event_count() == before
