"""The same contract for both event stores a ``Books`` runs on: PostgreSQL
(``commands.recorder``, the SQL functions ``ledger_write`` and ``ledger_append``) and the
in-memory store the handlers' unit tests use (``commands.memory_store``). A rule the
memory store did not keep would let a handler test pass that fails on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, ProgrammingError, StoredEvent
from psycopg import sql

from commands.application import Books
from commands.event_store import MEMORY_STORE, event_store_env
from tests.conftest import Urls, store_beside, unique

FAR = datetime(2100, 1, 1, tzinfo=UTC)  # a timeout the expirer never reaches


@pytest.fixture(scope="module")
def own_store(servers: Urls) -> Iterator[Urls]:
    """A database of its own: these events are not the ledger's, and nothing else may read them."""
    store = store_beside(servers)
    yield store
    name = urlsplit(store.database_url).path.lstrip("/")
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=["postgres", "memory"])
def recorder(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "postgres":
        store: Urls = request.getfixturevalue("own_store")
        app = Books(event_store_env(store.settings()))
    else:
        app = Books(MEMORY_STORE)
    yield app.recorder
    app.close()


def event(stream: uuid.UUID, version: int) -> StoredEvent:
    return StoredEvent(stream, version, "tests:Contract.Event", b'{"n": %d}' % version)


def versions(recorder: Any, stream: uuid.UUID) -> list[int]:
    return [e.originator_version for e in recorder.select_events(stream)]


def test_a_write_numbers_its_events_in_order_and_reads_them_back(recorder: Any) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    positions = recorder.write([event(a, 1), event(a, 2), event(b, 1)], read_versions={})
    assert positions == list(range(positions[0], positions[0] + 3))
    assert recorder.max_notification_id() == positions[-1]
    ranged = recorder.select_range(positions[0], positions[-1])
    assert [(e.originator_id, e.originator_version) for e in ranged] == [(a, 1), (a, 2), (b, 1)]
    assert recorder.position_of(a, 2) == positions[1]
    assert recorder.position_of(b, 2) is None
    beyond = recorder.select_beyond([a, b], [1, 0])
    assert [(e.originator_id, e.originator_version, e.state) for e in beyond] == [
        (a, 2, b'{"n": 2}'),
        (b, 1, b'{"n": 1}'),
    ]


def test_an_append_takes_the_streams_next_version(recorder: Any) -> None:
    a = uuid.uuid4()
    recorder.write([event(a, 1)], read_versions={})
    recorder.write([event(a, 0), event(a, 0)], read_versions={})
    assert versions(recorder, a) == [1, 2, 3]


@pytest.mark.parametrize(
    "case",
    ["version used twice", "stream moved since read", "version gap", "timeout set twice"],
)
def test_a_write_that_breaks_a_rule_is_refused_whole(recorder: Any, case: str) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    transfer = unique("t")
    recorder.write([event(a, 1)], read_versions={}, timeouts_set=[(transfer, FAR)])
    head = recorder.max_notification_id()
    write: dict[str, Any] = {
        "version used twice": {"stored_events": [event(b, 1), event(a, 1)], "read_versions": {}},
        "stream moved since read": {"stored_events": [event(b, 1)], "read_versions": {str(a): 0}},
        "version gap": {"stored_events": [event(b, 1), event(a, 3)], "read_versions": {}},
        "timeout set twice": {"stored_events": [event(b, 1)], "read_versions": {}, "timeouts_set": [(transfer, FAR)]},
    }[case]
    # A conflict is retried by the writer (IntegrityError); a gap is a bug, failed at once.
    with pytest.raises(ProgrammingError if case == "version gap" else IntegrityError):
        recorder.write(**write)
    assert recorder.max_notification_id() == head
    assert versions(recorder, b) == []
    recorder.write([event(a, 2)], read_versions={}, timeouts_cleared=[transfer])  # the store goes on
    assert versions(recorder, a) == [1, 2]
