"""Malformed and forged messages produced straight onto the topic, next to the relay's:
the projector sets each aside as a dead letter with its reason and goes on, and the read
model's watermark never goes past the event store's head.

Real broker, MongoDB-protocol server and event store; each test has its own topic and
read-model database.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import REGISTRY

from commands.application import Books
from commands.messages import TransferFunds
from contracts import readmodel as schema
from contracts.events import LedgerEvent
from projectors.projector import Projector
from projectors.relay import Relay
from projectors.replay import differences
from projectors.store_head import StoreHead
from projectors.views import ReadModelWriter
from queries import readmodel
from tests.conftest import Urls, unique
from tests.integration.forged import Forged, Headers, checkpoint_headers, event_headers, produce
from tests.integration.test_pipeline import drain_relay, make_relay, project_until, some_activity

DEBITED = "ledger.account.debited.v1"


@dataclass
class Pipeline:
    books: Books
    servers: Urls
    db: Any
    topic: str
    relay: Relay
    projector: Projector
    payer: str
    payee: str

    def settle(self, dead_letters: int, timeout: float = 30) -> None:
        """Project until ``dead_letters`` are recorded and the topic is read to its end."""
        deadline = time.monotonic() + timeout
        while self.projector.process_batch(0.3) or self.db[schema.DEAD_LETTERS].count_documents({}) < dead_letters:
            assert time.monotonic() < deadline, list(self.db[schema.DEAD_LETTERS].find())

    def letters(self) -> list[dict[str, Any]]:
        return list(self.db[schema.DEAD_LETTERS].find().sort([("partition", 1), ("offset", 1)]))

    def available(self, account: str) -> str:
        return str(readmodel.account(self.db, account)["balance"]["available"])

    def next_debit(self, position: int, **changes: str | bytes | None) -> Headers:
        """Headers of a debit of the payer that would apply next, were it believed."""
        version = int(self.db[schema.ACCOUNTS].find_one({"_id": self.payer})["version"])
        return event_headers(DEBITED, self.payer, version + 1, position, **changes)

    def debit_data(self, **changes: Any) -> bytes:
        data = {"account": self.payer, "transfer": unique("forged"), "asset": "USD/2", "amount": "5000"}
        return json.dumps({**data, **changes}).encode()


@pytest.fixture
def pipeline(books: Books, servers: Urls, mongo_db: Any) -> Iterator[Pipeline]:
    """Some activity, relayed to a fresh topic and projected up to the store's head."""
    payer, payee = some_activity(books, transfers=1)
    topic = unique("events")
    relay = make_relay(books, servers, topic)
    drain_relay(relay)
    store_head = StoreHead(servers.database_url)
    projector = Projector(mongo_db, servers.consumer(), servers.topic_watch(topic, 3), store_head=store_head)
    projector.start()
    project_until(projector, mongo_db, books.head_position())
    yield Pipeline(books, servers, mongo_db, topic, relay, projector, payer, payee)
    projector.consumer.close()
    store_head.close()
    relay.state.close()


def test_malformed_messages_are_set_aside_with_their_reason_and_the_projector_goes_on(pipeline: Pipeline) -> None:
    p = pipeline
    head = p.books.head_position()
    before = p.available(p.payer)
    counted = REGISTRY.get_sample_value("ledger_dead_letters_total", {"service": "projector"}) or 0.0
    good = p.debit_data()
    forged = [
        Forged([], good, label="missing_header"),  # no headers at all
        Forged(p.next_debit(head, ce_type="ledger.account.drained.v1"), good, label="unknown_type"),
        Forged(p.next_debit(head, ce_type=None), good, label="missing_header"),
        Forged(p.next_debit(head, ce_time=None, ce_subject=None), good, label="missing_header"),
        Forged(p.next_debit(head), b"{not json", label="bad_json"),
        Forged(p.next_debit(head), None, label="bad_json"),
        Forged(p.next_debit(head), b"[" * 100_000, label="bad_json"),  # deeper than any parser goes
        Forged(p.next_debit(head), b'["a list"]', 1, label="bad_data"),
        # Required fields missing: this one made the whole batch fail with a KeyError.
        Forged(p.next_debit(head), json.dumps({"account": p.payer}).encode(), 1, label="bad_data"),
        Forged(p.next_debit(head), p.debit_data(amount=5000), 1, label="bad_data"),
        Forged(p.next_debit(head), p.debit_data(amount="-5"), 1, label="bad_data"),
        Forged(p.next_debit(head), p.debit_data(admin=True), 1, label="bad_data"),
        Forged(p.next_debit(head, ce_position="12abc"), good, 2, label="bad_header"),
        Forged(p.next_debit(head, ce_sequence=str(2**63)), good, 2, label="bad_header"),
        Forged(p.next_debit(head, ce_time="yesterday"), good, 2, label="bad_header"),
        Forged(p.next_debit(head, ce_time="2026-01-01T00:00:00"), good, 2, label="bad_header"),  # no offset
        Forged(p.next_debit(head, ce_specversion="0.3"), good, 2, label="bad_header"),
        Forged(p.next_debit(head, ce_source="/elsewhere"), good, 2, label="bad_header"),
        Forged(p.next_debit(head, ce_subject=b"\xff\xfe"), good, 2, label="bad_header"),  # not UTF-8
        Forged([*p.next_debit(head), ("ce_type", "ledger.account.credited.v1")], good, 2, label="bad_header"),
    ]
    produce(p.servers.kafka_bootstrap, p.topic, forged)
    p.settle(len(forged))

    letters = p.letters()
    expected = sorted((f.partition, f.label) for f in forged)
    assert sorted((letter["partition"], letter["reason"]) for letter in letters) == expected
    assert all(letter["detail"] and letter["consumer"] == "projector" for letter in letters)
    assert {letter["topic"] for letter in letters} == {p.topic}
    assert any(letter["detail"] == "data must contain ['amount', 'asset', 'transfer'] properties" for letter in letters)
    nested = next(letter for letter in letters if letter["value_size"] == 100_000)
    assert (nested["reason"], len(nested["value"])) == ("bad_json", 64 * 1024)  # a bounded copy
    assert p.available(p.payer) == before  # none of them moved anything
    assert REGISTRY.get_sample_value("ledger_dead_letters_total", {"service": "projector"}) == counted + len(letters)
    assert schema.watermark(p.db) <= p.books.head_position()

    # The projector goes on: the next real events apply, on top of the same versions.
    moved = p.books.transfer(TransferFunds(unique("t"), p.payer, p.payee, "0.75"))["position"]
    drain_relay(p.relay)
    project_until(p.projector, p.db, moved)
    assert p.available(p.payer) == f"{float(before) - 0.75:.2f}"
    assert differences(p.books, p.db) == []

    # Read again from the start (as after a lost offset), each is recorded once.
    p.db[schema.PROJECTOR_STATE].delete_many({"_id": {"$regex": "^partition:"}})
    again = Projector(p.db, p.servers.consumer(), p.servers.topic_watch(p.topic, 3), store_head=p.books.head_position)
    again.start()
    while again.process_batch(0.5):
        pass
    again.consumer.close()
    assert len(p.letters()) == len(forged)
    assert differences(p.books, p.db) == []


def test_positions_beyond_the_store_head_are_set_aside_and_the_watermark_stays_within_it(pipeline: Pipeline) -> None:
    p = pipeline
    head = p.books.head_position()
    before = p.available(p.payer)
    far = head + 1_000_000
    topic_id = p.projector.topic_id
    forged = [
        # Checkpoints to every partition: believed, they would raise the watermark to `far`.
        *(Forged(checkpoint_headers(far, far, topic_id), b"{}", partition) for partition in range(3)),
        Forged(checkpoint_headers(head, far, topic_id), b"{}", 1),  # a head the store has not reached
        Forged(p.next_debit(far), p.debit_data(), 2),  # a well-formed event from the future
    ]
    produce(p.servers.kafka_bootstrap, p.topic, forged)
    p.settle(len(forged))

    assert [letter["reason"] for letter in p.letters()] == ["beyond_head"] * len(forged)
    assert f"claims position {far}" in p.letters()[0]["detail"]
    store_head = p.books.head_position()
    assert schema.watermark(p.db) == head <= store_head
    status = schema.status(p.db)
    assert status["event_store_head"] <= store_head and status["relay_position"] <= store_head
    assert p.available(p.payer) == before

    moved = p.books.transfer(TransferFunds(unique("t"), p.payer, p.payee, "1.00"))["position"]
    drain_relay(p.relay)
    project_until(p.projector, p.db, moved)
    assert schema.watermark(p.db) <= p.books.head_position()
    assert p.available(p.payer) == f"{float(before) - 1:.2f}"
    assert differences(p.books, p.db) == []


class _Refusing(ReadModelWriter):
    """The real writer, except that it cannot apply one chosen event (as for a case the
    checks missed): what the projector does then is what is under test."""

    def __init__(self, db: Any, refused_id: str) -> None:
        super().__init__(db)
        self.refused_id = refused_id

    def apply_batch(self, events: list[LedgerEvent]) -> None:
        if any(event.id == self.refused_id for event in events):
            raise KeyError("a field the checks let through")
        super().apply_batch(events)


def test_an_event_the_writer_cannot_apply_is_set_aside_alone(pipeline: Pipeline) -> None:
    p = pipeline
    head = p.books.head_position()
    odd = Forged(
        event_headers("ledger.transfer.voided.v1", unique("t"), 2, head), b'{"transfer": "x", "reason": "voided"}'
    )
    refused_id = dict(odd.headers)["ce_id"]
    assert isinstance(refused_id, str)
    p.projector.writer = _Refusing(p.db, refused_id)
    produce(p.servers.kafka_bootstrap, p.topic, [odd])
    moved = p.books.transfer(TransferFunds(unique("t"), p.payer, p.payee, "2.00"))["position"]
    drain_relay(p.relay)
    project_until(p.projector, p.db, moved)
    p.settle(1)
    [letter] = p.letters()
    assert (letter["reason"], letter["partition"]) == ("unreadable", 0)
    assert "KeyError" in letter["detail"]
    assert differences(p.books, p.db) == []  # the rest of its batch applied
