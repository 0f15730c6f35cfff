"""Pending transfers on the real event store: make, post (in full or for less), void,
expire; each resolves at most once.

Here, what needs PostgreSQL or HTTP: racing writers, the expirer's SQL side table, a
connection reused across retries. The rules themselves run on the in-memory store in
``tests/unit/handlers/test_pending_transfers.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from commands.application import Books
from commands.event_store import event_store_env
from commands.expirer import Expirer
from commands.messages import PostTransfer, TransferFunds, VoidTransfer
from ledger.errors import (
    TransferExpired,
    TransferNotPending,
)
from tests.conftest import Clock, Urls, funded, unique
from tests.scenarios import balances, make_pending


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def books(servers: Urls, clock: Clock) -> Iterator[Books]:
    app = Books(event_store_env(servers.settings()), clock=clock)
    yield app
    app.close()


def test_racing_post_and_void_resolve_once(books: Books, servers: Urls, clock: Clock) -> None:
    a, b = funded(books)

    def attempt(action: Any, command: Any, outcomes: list[str]) -> None:
        app = Books(event_store_env(servers.settings()), clock=clock)
        try:
            outcomes.append(action(app, command)["status"])
        except TransferNotPending:
            outcomes.append("refused")
        finally:
            app.close()

    for _ in range(5):
        transfer_id = make_pending(books, a, b, "1.00")
        outcomes: list[str] = []
        threads = [
            threading.Thread(target=attempt, args=(Books.post_transfer, PostTransfer(transfer_id), outcomes)),
            threading.Thread(target=attempt, args=(Books.void_transfer, VoidTransfer(transfer_id), outcomes)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) in (["posted", "refused"], ["refused", "voided"])
    account = books.account(a)
    assert account.pending_debits == 0
    assert account.posted_debits + account.available == 10000


def test_an_expired_hold_cannot_be_posted_and_the_expirer_voids_it_once(
    books: Books, servers: Urls, clock: Clock
) -> None:
    a, b = funded(books)
    transfer_id = make_pending(books, a, b, timeout=60)
    keeps = make_pending(books, a, b, "5.00", timeout=3600)
    clock.now += timedelta(seconds=61)
    with pytest.raises(TransferExpired):
        books.post_transfer(PostTransfer(transfer_id))
    expirer = Expirer(books, servers.database_url)
    try:
        assert transfer_id in expirer.due()
        assert keeps not in expirer.due()
        expirer.expire_due()
        assert transfer_id not in expirer.due()
        assert expirer.expire_due() == 0  # a second pass (or a restarted expirer) does nothing
    finally:
        expirer.close()
    assert books.transfer_record(transfer_id).status == "expired"  # type: ignore[union-attr]
    assert balances(books, a) == (0, 10000, 500, 0, 9500)
    # Expired, as before the expirer ran: the answer does not depend on when it runs.
    with pytest.raises(TransferExpired):
        books.void_transfer(VoidTransfer(transfer_id))
    with pytest.raises(TransferExpired):
        books.post_transfer(PostTransfer(transfer_id))


def test_a_resolved_hold_leaves_no_timeout_behind(books: Books, servers: Urls, clock: Clock) -> None:
    a, b = funded(books)
    posted = make_pending(books, a, b, "1.00", timeout=10)
    voided = make_pending(books, a, b, "1.00", timeout=10)
    books.post_transfer(PostTransfer(posted))
    books.void_transfer(VoidTransfer(voided))
    clock.now += timedelta(seconds=11)
    expirer = Expirer(books, servers.database_url)
    try:
        assert {posted, voided}.isdisjoint(expirer.due())
    finally:
        expirer.close()


def test_retried_holds_on_one_connection_keep_it_usable(servers: Urls, clock: Clock) -> None:
    """A retried hold fails inside the save's pipeline (its id is taken); nothing queued
    behind such a failure may be a statement the driver then believes prepared."""
    app = Books(event_store_env(servers.settings(db_pool_size=1)), clock=clock)
    try:
        a, b = funded(app)
        for _ in range(12):
            command = TransferFunds(unique("h"), a, b, "0.01", pending=True, timeout_seconds=60)
            first = app.transfer(command)
            assert app.transfer(command) == first
            assert app.transfer(TransferFunds(unique("t"), a, b, "0.01"))["status"] == "posted"
    finally:
        app.close()
