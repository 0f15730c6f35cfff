"""The command handlers on the real event store (embedded PostgreSQL).

Here, what needs PostgreSQL or HTTP: amounts read back from PostgreSQL cold, a write
that keeps conflicting, concurrent writers. The rules themselves run on the in-memory
store in ``tests/unit/handlers/test_commands.py``.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from commands.application import Books
from commands.event_store import event_store_env
from commands.messages import Deposit, OpenAccount, TransferFunds
from ledger.errors import Busy
from ledger.ids import issuance_account_id
from tests.conftest import Urls, unique
from tests.scenarios import open_pair


def test_amounts_up_to_2_pow_127_minus_1_stay_exact(books: Books, servers: Urls) -> None:
    a, b = open_pair(books, asset="BIG/0")
    top = 2**127 - 1
    books.deposit(Deposit(unique("d"), a, str(top)))
    books.transfer(TransferFunds(unique("t"), a, b, str(top - 1)))
    fresh = Books(event_store_env(servers.settings()))  # a cold cache: everything is read back from the store
    try:
        assert (fresh.account(a).available, fresh.account(b).available) == (1, top - 1)
    finally:
        fresh.close()


def test_a_write_that_keeps_conflicting_gives_up_with_busy(servers: Urls) -> None:
    """The conflict is forced: the group's write is replaced by one that always raises
    IntegrityError, as a concurrent writer's version would (the real conflict path is
    exercised by the concurrency tests)."""
    books = Books(event_store_env(servers.settings()), write_attempts=3)
    calls: list[int] = []

    def always_conflicting(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        raise IntegrityError("duplicate key")

    books.recorder.write = always_conflicting  # type: ignore[attr-defined]
    try:
        with pytest.raises(Busy, match="3 attempts"):
            books.open_account(OpenAccount(unique("A"), "USD/2"))
    finally:
        books.close()
    assert len(calls) == 3 and books.conflicts == 3


def test_concurrent_deposits_share_the_issuance_account_without_conflicts(servers: Urls) -> None:
    """Four writers (four applications, as in four processes), each depositing into its
    own account of one asset: every deposit also debits the asset's issuance account,
    which is appended to without a version check, so no writer ever conflicts."""
    asset = f"I{uuid.uuid4().hex[:6].upper()}/2"
    accounts = [unique("D") for _ in range(4)]
    writers = [Books(event_store_env(servers.settings())) for _ in accounts]
    try:
        for account, writer in zip(accounts, writers, strict=True):
            writer.open_account(OpenAccount(account, asset))
        threads = [
            threading.Thread(target=lambda a=a, w=w: [w.deposit(Deposit(unique("d"), a, "0.10")) for _ in range(25)])
            for a, w in zip(accounts, writers, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(w.conflicts for w in writers) == 0
    finally:
        for writer in writers:
            writer.close()
    fresh = Books(event_store_env(servers.settings()))
    try:
        issuance = fresh.account(issuance_account_id(asset))
        assert (issuance.version, issuance.posted_debits) == (101, 100 * 10)
        assert [fresh.account(a).available for a in accounts] == [250] * 4
    finally:
        fresh.close()
