"""Balance monitors over the command API, on the real event store, broker and read model:
``ledger.monitor.triggered.v1`` once per crossing, whatever the number of movements, and
every bad request refused with nothing written."""

from __future__ import annotations

import json
import time
from typing import Any

import falcon.testing
import pytest
from confluent_kafka import TopicPartition

from auth.store import KeyStore
from commands.application import Books
from commands.http import create_app
from commands.messages import (
    AccountAction,
    Deposit,
    ExecuteTransaction,
    OpenAccount,
    PostTransfer,
    TransferFunds,
    VoidTransfer,
)
from contracts.events import CHECKPOINT, MONITOR_CLEARED, MONITOR_TRIGGERED
from contracts.validation import decode_headers
from ledger.ids import issuance_account_id
from projectors.projector import Projector
from projectors.replay import differences
from queries import readmodel
from tests.conftest import Urls, api_client, funded, unique
from tests.integration.test_pipeline import drain_relay, make_relay, project_until

PARTITIONS = 3


@pytest.fixture
def admin(books: Books, keys: KeyStore, admin_token: str) -> falcon.testing.TestClient:
    return api_client(create_app(books, keys=keys), admin_token)


def messages_about(servers: Urls, topic: str, account: str, head: int) -> list[tuple[str, dict[str, Any]]]:
    """(type, data) of every message keyed by ``account``, in order, up to ``head``."""
    consumer = servers.consumer()
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    found: list[tuple[int, str, dict[str, Any]]] = []
    checkpoints: dict[int, int] = {}
    deadline = time.monotonic() + 30
    try:
        while len(checkpoints) < PARTITIONS or min(checkpoints.values()) < head:
            assert time.monotonic() < deadline, checkpoints
            for message in consumer.consume(1000, 0.5):
                headers = decode_headers(message)
                if headers["ce_type"] == CHECKPOINT:
                    checkpoints[message.partition()] = int(headers["ce_position"])
                elif message.key() == account.encode():
                    found.append((int(headers["ce_sequence"]), headers["ce_type"], json.loads(message.value())))
    finally:
        consumer.close()
    return [(kind, data) for _, kind, data in sorted(found, key=lambda f: f[0])]


def test_a_monitor_fires_once_per_crossing_on_kafka_and_the_read_model_shows_it(
    books: Books, admin: falcon.testing.TestClient, servers: Urls, mongo_db: Any
) -> None:
    payer, payee = funded(books, "100.00")
    set_low = admin.simulate_post(
        "/v1/monitors", json={"id": "low", "account": payer, "when": "below", "amount": "50.00"}
    )
    assert set_low.status_code == 200, set_low.json
    assert {k: set_low.json[k] for k in ("state", "balance", "amount", "asset")} == {
        "state": "clear",
        "balance": "available",
        "amount": "50.00",
        "asset": "USD/2",
    }
    again = admin.simulate_post("/v1/monitors", json={"id": "low", "account": payer, "when": "below", "amount": "50"})
    assert (again.status_code, again.json["position"]) == (200, set_low.json["position"])  # nothing new written
    rich = admin.simulate_post(
        "/v1/monitors", json={"id": "rich", "account": payee, "when": "above", "amount": "0", "balance": "posted"}
    )
    assert rich.status_code == 200 and rich.json["state"] == "clear"

    for n in range(4):  # 100.00 -> 80.00: nothing crossed
        books.transfer(TransferFunds(unique("t"), payer, payee, "5.00"))
    hold = unique("h")
    books.transfer(TransferFunds(hold, payer, payee, "40.00", pending=True))  # available 40.00: crossed
    legs = tuple(TransferFunds(unique("l"), payer, payee, "1.00") for _ in range(3))
    books.transaction(ExecuteTransaction(unique("tx"), legs))  # further below, three movements
    books.void_transfer(VoidTransfer(hold))  # 77.00: back above
    crossing = unique("t")
    books.transfer(TransferFunds(crossing, payer, payee, "30.00"))  # 47.00: the second crossing
    second = unique("h")
    books.transfer(TransferFunds(second, payer, payee, "1.00", pending=True))
    books.post_transfer(PostTransfer(second))

    topic = unique("monitors")
    drain_relay(make_relay(books, servers, topic))
    head = books.head_position()
    crossings = [
        (kind, data["monitor"], data["value"], data["transfer"])
        for kind, data in messages_about(servers, topic, payer, head)
        if kind in (MONITOR_TRIGGERED, MONITOR_CLEARED)
    ]
    assert crossings == [
        (MONITOR_TRIGGERED, "low", "4000", hold),
        (MONITOR_CLEARED, "low", "7700", hold),
        (MONITOR_TRIGGERED, "low", "4700", crossing),
    ]
    payee_monitor = [
        (kind, data.get("value")) for kind, data in messages_about(servers, topic, payee, head) if ".monitor." in kind
    ]
    assert payee_monitor == [("ledger.monitor.set.v1", None), (MONITOR_TRIGGERED, "500")]  # the first credit only

    projector = Projector(
        mongo_db, servers.consumer(), servers.topic_watch(topic, PARTITIONS), store_head=books.head_position
    )
    projector.start()
    project_until(projector, mongo_db, head)
    assert differences(books, mongo_db) == []  # versions included: monitor events are the account's
    (low,) = readmodel.account(mongo_db, payer)["monitors"]
    assert {k: low[k] for k in ("id", "when", "amount", "state")} == {
        "id": "low",
        "when": "below",
        "amount": "50.00",
        "state": "triggered",
    }

    removed = admin.simulate_post("/v1/monitors/low/remove", json={"account": payer})
    assert (removed.status_code, removed.json["state"]) == (200, "removed")
    gone = admin.simulate_post("/v1/monitors/low/remove", json={"account": payer})
    assert (gone.status_code, gone.json["code"]) == (404, "monitor_not_found")


def test_bad_monitor_requests_are_refused_and_write_nothing(
    books: Books, admin: falcon.testing.TestClient, keys: KeyStore, event_count: Any
) -> None:
    account, other = funded(books)
    books.deposit(Deposit(unique("d"), other, "1.00"))
    good = {"id": "m", "account": account, "when": "below", "amount": "1.00"}
    before = event_count()
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({**good, "account": unique("nobody")}, 404, "account_not_found"),
        ({**good, "account": issuance_account_id("USD/2")}, 400, "invalid_request"),
        ({**good, "when": "sideways"}, 400, "invalid_request"),
        ({**good, "balance": "pending"}, 400, "invalid_request"),
        ({**good, "amount": "1.001"}, 400, "invalid_amount"),
        ({**good, "amount": "-1.00"}, 400, "invalid_amount"),
        ({**good, "amount": 100}, 400, "invalid_amount"),
        ({**good, "id": "bad id"}, 400, "invalid_request"),
        ({**good, "extra": 1}, 400, "invalid_request"),
        ({k: v for k, v in good.items() if k != "when"}, 400, "invalid_request"),
    ]
    for body, status, code in cases:
        answer = admin.simulate_post("/v1/monitors", json=body)
        assert (answer.status_code, answer.json["code"]) == (status, code), (body, answer.json)
        assert answer.headers["content-type"] == "application/problem+json"
    for path, body in (
        ("/v1/monitors/m/remove", {"account": account}),
        ("/v1/monitors/m/remove", {}),
        ("/v1/monitors/bad%20id/remove", {"account": account}),
    ):
        answer = admin.simulate_post(path, json=body)
        assert answer.status_code in (400, 404), (path, body, answer.json)
    assert event_count() == before

    books.open_account(OpenAccount(closed := unique("c"), "USD/2"))
    books.account_action(AccountAction(closed, "close"))
    before = event_count()
    answer = admin.simulate_post("/v1/monitors", json={**good, "account": closed})
    assert (answer.status_code, answer.json["code"]) == (422, "account_not_open")

    key, secret = keys.create("tests: one account", ["accounts"], [account])
    limited = api_client(create_app(books, keys=keys), f"{key.key_id}.{secret}")
    assert limited.simulate_post("/v1/monitors", json={**good, "account": other}).status_code == 403
    assert event_count() == before
    assert limited.simulate_post("/v1/monitors", json=good).status_code == 200
    assert event_count() == before + 1
