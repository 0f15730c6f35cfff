"""Metrics and readiness, in process, on the real servers (the e2e tests scrape the
running stack under load). Outside gunicorn there is no multi-process directory, so
/metrics shows this process's registry."""

from __future__ import annotations

import time
from typing import Any

import falcon
import falcon.testing
import pytest
from prometheus_client import REGISTRY

from auth.store import KeyStore
from commands import http as command_http
from commands.application import Books
from queries import http as query_http
from runtime import kafka, metrics, web
from tests.conftest import Urls, api_client, free_port, funded, unique


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def scraper(keys: KeyStore) -> str:
    key, secret = keys.create("tests: prometheus", ["metrics"])
    return f"{key.key_id}.{secret}"


def test_metrics_need_a_key_with_the_metrics_scope_which_reads_nothing_else(
    books: Books, keys: KeyStore, scraper: str, mongo_db: Any
) -> None:
    command = command_http.create_app(books, keys)
    query = query_http.create_app(mongo_db, 1.0, keys)
    assert falcon.testing.TestClient(command).simulate_get("/metrics").status_code == 401
    reader, secret = keys.create("tests: reader", ["read"])
    assert api_client(query, f"{reader.key_id}.{secret}").simulate_get("/metrics").status_code == 403
    page = api_client(command, scraper).simulate_get("/metrics")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
    assert "ledger_http_requests_total" in page.text
    assert api_client(query, scraper).simulate_get("/v1/status").status_code == 403
    assert (
        api_client(command, scraper).simulate_post("/v1/accounts", json={"id": "x", "asset": "USD/2"}).status_code
        == 403
    )


def test_commands_are_counted_by_type_and_outcome_and_requests_by_route(
    books: Books, keys: KeyStore, admin_token: str
) -> None:
    client = api_client(command_http.create_app(books, keys), admin_token)
    a, b = funded(books)
    body = {"id": unique("t"), "debit_account": a, "credit_account": b, "amount": "1.00"}
    ok, replayed, broke = (
        sample("ledger_commands_total", command="transfer", outcome=o) for o in ("ok", "replayed", "insufficient_funds")
    )
    routed = sample(
        "ledger_http_requests_total",
        api="command",
        route="/v1/transfers/{transfer_id}/void",
        method="POST",
        status="404",
    )
    assert client.simulate_post("/v1/transfers", json=body).status_code == 201
    assert client.simulate_post("/v1/transfers", json=body).status_code == 201
    assert client.simulate_post("/v1/transfers", json=body | {"id": unique("t"), "amount": "500.00"}).status_code == 422
    assert client.simulate_post(f"/v1/transfers/{unique('nope')}/void").status_code == 404
    assert sample("ledger_commands_total", command="transfer", outcome="ok") == ok + 1
    assert sample("ledger_commands_total", command="transfer", outcome="replayed") == replayed + 1
    assert sample("ledger_commands_total", command="transfer", outcome="insufficient_funds") == broke + 1
    # by the route's template, never the raw path: an id per series would have no bound
    assert (
        sample(
            "ledger_http_requests_total",
            api="command",
            route="/v1/transfers/{transfer_id}/void",
            method="POST",
            status="404",
        )
        == routed + 1
    )
    assert sample("ledger_group_commit_size_count") >= 3


def dead_port() -> int:
    return free_port()  # nothing listens on it


def test_readyz_names_each_dependency_that_is_down(servers: Urls) -> None:
    app = web.create_base_app()
    app.add_route(
        "/readyz",
        metrics.Readiness(
            {
                "postgres": metrics.postgres_check(servers.writer_url),
                "mongodb": metrics.mongodb_check(servers.mongo_url),
                "kafka": metrics.kafka_check(kafka.admin_client(servers.kafka_bootstrap)),
            }
        ),
    )
    ready = falcon.testing.TestClient(app).simulate_get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {"status": "ready", "checks": {"postgres": "ok", "mongodb": "ok", "kafka": "ok"}}

    app = web.create_base_app()
    down = f"127.0.0.1:{dead_port()}"
    app.add_route(
        "/readyz",
        metrics.Readiness(
            {
                "postgres": metrics.postgres_check(servers.writer_url),
                "mongodb": metrics.mongodb_check(f"mongodb://{down}/", timeout=1.0),
                "kafka": metrics.kafka_check(kafka.admin_client(down), timeout=1.0),
            }
        ),
    )
    started = time.monotonic()
    result = falcon.testing.TestClient(app).simulate_get("/readyz")
    assert time.monotonic() - started < 10
    assert result.status_code == 503 and result.headers["content-type"] == "application/problem+json"
    problem = result.json
    assert problem["code"] == "not_ready" and "mongodb" in problem["detail"] and "kafka" in problem["detail"]
    assert problem["checks"]["postgres"] == "ok" and problem["checks"]["kafka"] == "down (KafkaException)"
    assert servers.mongo_url.split("//")[1].split("/")[0] not in result.text  # no host or user told to anyone
    assert result.headers["Retry-After"] == "5"
