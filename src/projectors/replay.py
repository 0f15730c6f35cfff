"""The operator's replay of the event store, for ``ledger projections verify``.

It reads the notification log from the first event and folds the events itself, without
the aggregates or anything read from MongoDB, so it is a witness of what the projector
should have written. The balances follow the domain's one table of what each movement
does (``ledger.accounts.MOVEMENTS``, which the aggregate is tested against); the
auditors' replay (``audit.book_check``) is the independent check of that arithmetic.
Both are compared with the read model by ``contracts.readmodel_check``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic
from pymongo.database import Database

from commands.application import Books
from contracts.readmodel_check import Comparison, Expected, ExpectedAccount, compare_read_model
from ledger.accounts import CLOSED, FROZEN, MOVEMENTS, OPEN, Account
from ledger.transfers import PENDING, POSTED, Transfer


@dataclass
class ReplayedAccount:
    account_id: str
    asset: str
    posted_debits: int = 0
    posted_credits: int = 0
    pending_debits: int = 0
    pending_credits: int = 0
    version: int = 1
    movements: int = 0
    status: str = OPEN
    overdraft_limit: int = 0
    limits: tuple[int | None, int | None] = (None, None)

    def apply(self, event: Any) -> None:
        if isinstance(event, Account.Frozen):
            self.status = FROZEN
            return
        if isinstance(event, Account.Unfrozen):
            self.status = OPEN
            return
        if isinstance(event, Account.Closed):
            self.status = CLOSED
            return
        if isinstance(event, Account.OverdraftLimitChanged):
            self.overdraft_limit = event.overdraft_limit
            return
        if isinstance(event, Account.LimitsChanged):
            self.limits = (event.daily_limit, event.monthly_limit)
            return
        changes = MOVEMENTS.get(type(event))
        if changes is None:
            return
        for field, sign, amount in changes:
            setattr(self, field, getattr(self, field) + sign * getattr(event, amount))
        self.movements += 1

    def expected(self) -> ExpectedAccount:
        balances = (self.posted_debits, self.posted_credits, self.pending_debits, self.pending_credits)
        return ExpectedAccount(
            self.asset, balances, self.version, self.status, self.overdraft_limit, self.limits, self.movements
        )


def replay(books: Books, up_to: int | None = None, batch_size: int = 5000) -> Expected:
    """Fold the event stream into what the read model must hold."""
    accounts: dict[UUID, ReplayedAccount] = {}
    transfers: dict[UUID, list[str]] = {}  # [public id, status]
    last = 0
    for notification in _notifications(books, up_to, batch_size):
        event = books.mapper.to_domain_event(notification)
        last = notification.id
        if isinstance(event, Account.Opened):
            accounts[event.originator_id] = ReplayedAccount(
                event.account_id, event.asset, overdraft_limit=event.overdraft_limit
            )
        elif isinstance(event, Account.Event):
            account = accounts[event.originator_id]
            account.apply(event)
            account.version = event.originator_version
        elif isinstance(event, Transfer.Created):
            transfers[event.originator_id] = [event.transfer_id, PENDING if event.pending else POSTED]
        elif isinstance(event, Transfer.PendingPosted):
            transfers[event.originator_id][1] = POSTED
        elif isinstance(event, Transfer.Voided):
            transfers[event.originator_id][1] = event.reason
    return Expected(
        {a.account_id: a.expected() for a in accounts.values()},
        last,
        {public_id: status for public_id, status in transfers.values()},
    )


def moved_since(books: Books, position: int) -> bool:
    """Whether an account or a transfer was written after ``position``: what else is
    written meanwhile (the sealer's seals, a payout's progress) shows in nothing the
    comparison reads, so a running system can still be compared whole."""
    shown = (get_topic(Account) + ".", get_topic(Transfer) + ".")
    return any(n.topic.startswith(shown) for n in _notifications(books, None, 1000, after=position))


def _notifications(books: Books, up_to: int | None, batch_size: int, *, after: int = 0) -> Iterator[Any]:
    position = after
    while True:
        batch = books.recorder.select_notifications(
            start=position, limit=batch_size, stop=up_to, inclusive_of_start=False
        )
        if not batch:
            return
        yield from batch
        position = batch[-1].id


def compare_with_store(books: Books, db: Database[Any], *, wait_seconds: float) -> tuple[Expected, Comparison]:
    """Replay the whole store and compare the read model with it (``ledger projections verify``)."""
    expected = replay(books)
    return expected, compare_read_model(
        db, expected, lambda: moved_since(books, expected.position), wait_seconds=wait_seconds
    )


def differences(books: Books, db: Database[Any], *, wait_seconds: float = 10.0) -> list[str]:
    """Every way the read model differs from a replay of the whole store, for a quiet
    system (the tests'): empty only when every check was made and found nothing."""
    _, comparison = compare_with_store(books, db, wait_seconds=wait_seconds)
    found = [str(difference) for difference in comparison.differences]
    if not comparison.whole and not found:
        found.append(
            "event store: accounts or transfers were written meanwhile; transfers, entries and sums were not compared"
        )
    return found
