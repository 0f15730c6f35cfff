"""Bad input never answers 500: generated requests at every GET route of the query API.

The app runs in-process over the real MongoDB-protocol server (keys in the real
PostgreSQL; requests carry an admin key, so they reach the routes), with a read model that
holds an account with entries, a transfer and a payout, so generated requests reach
every branch (points in time, pages, cursors), not only "not found". ``min_position``
waits 10 ms here, so a position beyond the watermark answers 503 ``not_yet_visible``
(with Retry-After) at once: the one 5xx the contract allows for it, besides ``busy``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

import falcon.testing
import pymongo
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auth.store import KeyStore
from contracts.events import LedgerEvent
from projectors.views import ReadModelWriter
from queries.http import create_app
from tests.conftest import Urls, api_client, unique
from tests.integration.test_query_http import event, open_account

RETRYABLE = {"not_yet_visible", "busy"}


@pytest.fixture(scope="module")
def client(servers: Urls, keys: KeyStore, admin_token: str) -> Iterator[falcon.testing.TestClient]:
    mongo: pymongo.MongoClient[Any] = pymongo.MongoClient(servers.mongo_url)
    db = mongo[unique("fuzz").replace("-", "_")]
    writer = ReadModelWriter(db)
    writer.create_indexes()
    open_account(writer, "A", 1)
    open_account(writer, "B", 2)
    for version, kind in enumerate(["account.credited", "account.debited", "account.debit_pending"], start=2):
        writer.apply(
            event(kind, "A", version, version + 2, account="A", transfer=f"t{version}", asset="USD/2", amount="7")
        )
    transfer = {"transfer": "T", "kind": "transfer", "debit_account": "A", "credit_account": "B", "asset": "USD/2"}
    time = "2026-01-01T00:00:00+00:00"
    writer.apply(
        LedgerEvent(
            unique("e"), "ledger.transfer.posted.v1", "T", 1, 8, time, transfer | {"amount": "7", "metadata": {}}
        )
    )
    payout = {"payout": "P", "account": "A", "asset": "XLM/7", "amount": "10", "destination": "G", "hold": "P$payout"}
    writer.apply(event("payout.requested", "P", 1, 9, **payout, memo=None))
    writer.raise_watermark(9)
    writer.record_relay(9, 12)
    yield api_client(create_app(db, wait_seconds=0.01, keys=keys), admin_token)  # authenticated: the routes run
    mongo.drop_database(db.name)
    mongo.close()


def _cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


_printable = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#&")
_escapes = st.sampled_from(
    ["%", "%2", "%zz", "%FF", "%00", "%0A", "+", "%2B", "%26", "=", "%3D", "%ED%A0%80", "%F0%9F%92%A9"]
)
_junk = st.one_of(
    st.just(""),
    st.text(max_size=30).map(quote_plus),  # any unicode, properly escaped
    st.text(_printable, max_size=30),
    st.lists(_escapes, max_size=6).map("".join),
)
_numbers = st.one_of(
    st.integers(min_value=0, max_value=10**21),
    st.integers(min_value=-(2**65), max_value=600),
    st.sampled_from([2**63 - 1, 2**63, 2**64, 10**20 - 1, 10**19, 500, 501, 0, -1]),
).map(str) | st.sampled_from(["007", "+1", "1.0", "1e3", "0x10", " 1", "١", "²"]).map(quote_plus)
_times = st.one_of(
    st.builds(
        "{:04d}-{:02d}-{:02d}{}{:02d}:{:02d}:{:02d}{}{}".format,
        st.integers(0, 9999),
        st.integers(0, 14),
        st.integers(0, 33),
        st.sampled_from(["T", "t", "%20", "", "_"]),
        st.integers(0, 25),
        st.integers(0, 61),
        st.integers(0, 61),
        st.sampled_from(["", ".5", ".999999999", ".1234567890123", "."]),
        st.sampled_from(
            ["Z", "z", "", "%2B00:00", "+00:00", "-01:00", "%2B23:59", "-23:59", "%2B24:00", "+1", "-00:01"]
        ),
    ),
    st.sampled_from(["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00%2B00:01", "9999-12-31T23:59:59Z"]),
    st.datetimes().map(lambda moment: quote_plus(moment.isoformat())),
)
_cursors = st.one_of(
    _numbers.map(lambda number: _cursor({"v": int(number)}) if number.lstrip("-").isdigit() else number),
    st.sampled_from([{"v": True}, {"v": 1.5}, {"v": "1"}, {"v": None}, [1], "v", None, {"w": 1}, {"v": 10**5000}]).map(
        lambda payload: _cursor(payload) if payload != {"v": 10**5000} else "eyJ2IjogMX0" * 3
    ),
    st.binary(max_size=80).map(lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("=")),
)
_TYPED = {"min_position": _numbers, "at_position": _numbers, "limit": _numbers, "at": _times, "cursor": _cursors}
# Each GET route, an id that exists there, and the parameters it takes.
ROUTES: dict[str, tuple[str, list[str]]] = {
    "/v1/accounts/{}": ("A", ["min_position", "at_position", "at"]),
    "/v1/accounts/{}/entries": ("A", ["min_position", "limit", "cursor"]),
    "/v1/transfers/{}": ("T", ["min_position"]),
    "/v1/payouts/{}": ("P", ["min_position"]),
    "/v1/status": ("", ["min_position"]),
}


def _taken(taken: list[str]) -> st.SearchStrategy[tuple[str, str]]:
    """A parameter the route takes, mostly with a value of its type."""
    return st.sampled_from(taken).flatmap(lambda name: st.tuples(st.just(name), st.one_of(_TYPED[name], _junk)))


def _pair(taken: list[str]) -> st.SearchStrategy[tuple[str, str]]:
    """A parameter the route takes, or any parameter with any value, or junk."""
    known = st.sampled_from(list(_TYPED)).flatmap(
        lambda name: st.tuples(st.just(name), st.one_of(_junk, *_TYPED.values()))
    )
    junk = st.tuples(st.one_of(_junk, st.lists(_escapes, max_size=3).map("".join)), _junk)
    return st.one_of(_taken(taken), known, junk)


def _query_string(taken: list[str]) -> st.SearchStrategy[str]:
    """Often one parameter alone (an error in another would hide what its value does)."""
    return (
        st.one_of(
            _taken(taken).map(lambda pair: [pair]),
            st.lists(_taken(taken), max_size=2, unique_by=lambda pair: pair[0]),
            st.lists(_pair(taken), max_size=4),
        )
        .map(lambda pairs: "&".join(f"{n}={v}" for n, v in pairs))
        .filter(
            lambda query: not query.startswith("?")  # falcon's test client cannot send a leading "?"
        )
    )


_requests = st.sampled_from(list(ROUTES)).flatmap(
    lambda route: st.tuples(st.just(route), st.just(ROUTES[route][0]), _query_string(ROUTES[route][1]))
)
_odd_segments = st.one_of(
    st.text(min_size=1, max_size=40).map(lambda text: quote(text, safe="")),
    st.text(_printable.filter(lambda c: c not in "/?%"), min_size=1, max_size=40),
    st.lists(_escapes, min_size=1, max_size=6).map("".join),
    st.sampled_from([".", "..", "%2F", "%2e%2e", "%20", "~", "A%00", "%C0%AF", "%24issuance.USD.2", "x" * 1000]),
)


def assert_no_5xx_but_retry(result: falcon.testing.Result) -> None:
    """No 5xx, except 503 not_yet_visible or busy with Retry-After; every error a problem."""
    if result.status_code >= 500:
        assert result.status_code == 503, result.text
        assert result.json["code"] in RETRYABLE, result.text
        assert result.headers["retry-after"] == "1"
    if result.status_code >= 400:
        assert result.headers["content-type"] == "application/problem+json"
        assert isinstance(result.json["code"], str) and result.json["detail"]
    else:
        assert result.status_code == 200
        assert isinstance(result.json, dict)


@settings(max_examples=150, deadline=None)
@given(request=_requests)
def test_no_generated_query_gets_a_5xx(client: falcon.testing.TestClient, request: tuple[str, str, str]) -> None:
    route, known, query_string = request
    assert_no_5xx_but_retry(client.simulate_get(route.format(known), query_string=query_string))


@settings(max_examples=50, deadline=None)
@given(route=st.sampled_from(list(ROUTES)[:4]), segment=_odd_segments, query_string=_query_string(["min_position"]))
def test_no_odd_path_gets_a_5xx(client: falcon.testing.TestClient, route: str, segment: str, query_string: str) -> None:
    assert_no_5xx_but_retry(client.simulate_get(route.format(segment), query_string=query_string))


@settings(max_examples=50, deadline=None)
@given(
    request=_requests.filter(lambda request: request[2]).map(lambda request: (*request[:2], request[2].split("&")[0]))
)
def test_a_refused_parameter_is_named(client: falcon.testing.TestClient, request: tuple[str, str, str]) -> None:
    """One parameter at a time: a 400 names it."""
    route, known, query_string = request
    result = client.simulate_get(route.format(known), query_string=query_string)
    if result.status_code == 400:
        assert result.json["code"] == "invalid_request"
        name = unquote_plus(query_string.partition("=")[0])
        detail = result.json["detail"]
        assert detail.startswith(f"{name} ") or repr(name[:40])[:-1] in detail, (name, detail)
    else:
        assert_no_5xx_but_retry(result)
