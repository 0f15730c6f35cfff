"""Compare the MongoDB read models with a replay of the event store.

The replay reads the notification log from the first event and folds the events
itself, without the aggregates or anything read from MongoDB, so it is a witness of
what the projector should have written. The balances follow the domain's one table of
what each movement does (``ledger.accounts.MOVEMENTS``, which the aggregate is tested
against); the auditors' replay (``audit.book_check``) is the independent check of that
arithmetic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pymongo.database import Database

from commands.application import Ledger
from contracts.readmodel import ACCOUNTS, ENTRIES, TRANSFERS
from ledger.accounts import BALANCE_FIELDS, CLOSED, FROZEN, MOVEMENTS, OPEN, Account
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

    def balances(self) -> tuple[int, int, int, int]:
        return (self.posted_debits, self.posted_credits, self.pending_debits, self.pending_credits)


@dataclass
class Replay:
    accounts: dict[str, ReplayedAccount]
    transfers: dict[str, str]  # transfer id -> status
    position: int


def replay(ledger: Ledger, up_to: int | None = None, batch_size: int = 5000) -> Replay:
    """Fold the event stream into balances and transfer states."""
    accounts: dict[UUID, ReplayedAccount] = {}
    transfers: dict[UUID, list[str]] = {}  # [public id, status]
    last = 0
    for notification in _notifications(ledger, up_to, batch_size):
        event = ledger.mapper.to_domain_event(notification)
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
    return Replay(
        {a.account_id: a for a in accounts.values()},
        {public_id: status for public_id, status in transfers.values()},
        last,
    )


def unbalanced_assets(docs: Iterable[dict[str, Any]]) -> list[str]:
    """Double entry: per asset, posted debits equal posted credits, and pending ones too."""
    totals: dict[str, list[int]] = {}
    for doc in docs:
        sums = totals.setdefault(doc["asset"], [0, 0, 0, 0])
        for index, field in enumerate(BALANCE_FIELDS):
            sums[index] += int(doc[field])
    return [
        f"asset {asset}: posted debits {s[0]} vs credits {s[1]}, pending debits {s[2]} vs credits {s[3]}"
        for asset, s in sorted(totals.items())
        if s[0] != s[1] or s[2] != s[3]
    ]


def _notifications(ledger: Ledger, up_to: int | None, batch_size: int) -> Iterator[Any]:
    position = 0
    while True:
        batch = ledger.recorder.select_notifications(
            start=position, limit=batch_size, stop=up_to, inclusive_of_start=False
        )
        if not batch:
            return
        yield from batch
        position = batch[-1].id


def differences(ledger: Ledger, db: Database[Any]) -> list[str]:
    """Every way the read models differ from the replay; empty when they agree."""
    expected = replay(ledger)
    found: list[str] = []
    docs = {doc["_id"]: doc for doc in db[ACCOUNTS].find()}
    # One pass over the entries: a count per account would scan them once per account on
    # a server that counts without its index (nx-27017 does), quadratic in the store's size.
    entry_counts = Counter(doc["account"] for doc in db[ENTRIES].find({}, {"account": 1, "_id": 0}))
    for account_id, account in expected.accounts.items():
        doc = docs.pop(account_id, None)
        if doc is None:
            found.append(f"account {account_id!r} is missing from the read model")
            continue
        actual = (
            tuple(int(doc[f]) for f in BALANCE_FIELDS),
            doc["version"],
            doc["asset"],
            doc["status"],
            int(doc["overdraft_limit"]),
            tuple(None if doc.get(f) is None else int(doc[f]) for f in ("daily_limit", "monthly_limit")),
        )
        wanted = (
            account.balances(),
            account.version,
            account.asset,
            account.status,
            account.overdraft_limit,
            account.limits,
        )
        if actual != wanted:
            found.append(f"account {account_id!r}: read model has {actual}, replay gives {wanted}")
        entries = entry_counts.get(account_id, 0)
        if entries != account.movements:
            found.append(f"account {account_id!r}: {entries} entries, replay gives {account.movements}")
    found.extend(f"account {account_id!r} is in the read model but not in the event store" for account_id in docs)
    found.extend(unbalanced_assets(db[ACCOUNTS].find()))
    projected = {doc["_id"]: doc["status"] for doc in db[TRANSFERS].find({}, {"status": 1})}
    for transfer_id, status in sorted(expected.transfers.items()):
        if transfer_id not in projected:
            found.append(f"transfer {transfer_id!r} is missing from the read model")
        elif projected[transfer_id] != status:
            found.append(f"transfer {transfer_id!r}: read model says {projected[transfer_id]}, replay gives {status}")
    found.extend(f"transfer {t!r} is not in the event store" for t in sorted(set(projected) - set(expected.transfers)))
    return found
