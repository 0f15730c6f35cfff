"""Compare the MongoDB read models with a replay of the event store.

The replay reads the notification log from the first event and folds the events
itself, without the aggregates' own code paths or anything read from MongoDB, so it
is an independent witness of what the read models should say.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pymongo.database import Database

from commands.application import Ledger
from ledger.accounts import Account
from ledger.transfers import Transfer
from queries.readmodel import ACCOUNTS, ENTRIES, TRANSFERS


@dataclass
class ReplayedAccount:
    account_id: str
    asset: str
    posted_debits: int = 0
    posted_credits: int = 0
    version: int = 1
    movements: int = 0


def replay(
    ledger: Ledger, up_to: int | None = None, batch_size: int = 5000
) -> tuple[dict[str, ReplayedAccount], set[str], int]:
    """Fold the event stream into balances; returns (accounts, transfer ids, last position)."""
    by_uuid: dict[UUID, ReplayedAccount] = {}
    transfers: set[str] = set()
    last = 0
    for notification in _notifications(ledger, up_to, batch_size):
        event = ledger.mapper.to_domain_event(notification)
        last = notification.id
        if isinstance(event, Account.Opened):
            by_uuid[event.originator_id] = ReplayedAccount(event.account_id, event.asset)
        elif isinstance(event, (Account.Debited, Account.Credited)):
            account = by_uuid[event.originator_id]
            if isinstance(event, Account.Debited):
                account.posted_debits += event.amount
            else:
                account.posted_credits += event.amount
            account.version = event.originator_version
            account.movements += 1
        elif isinstance(event, Transfer.Posted):
            transfers.add(event.transfer_id)
    return {a.account_id: a for a in by_uuid.values()}, transfers, last


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
    accounts, transfer_ids, _ = replay(ledger)
    found: list[str] = []
    docs = {doc["_id"]: doc for doc in db[ACCOUNTS].find()}
    for account_id, expected in accounts.items():
        doc = docs.pop(account_id, None)
        if doc is None:
            found.append(f"account {account_id!r} is missing from the read model")
            continue
        actual = (int(doc["posted_debits"]), int(doc["posted_credits"]), doc["version"], doc["asset"])
        wanted = (expected.posted_debits, expected.posted_credits, expected.version, expected.asset)
        if actual != wanted:
            found.append(f"account {account_id!r}: read model has {actual}, replay gives {wanted}")
        entries = db[ENTRIES].count_documents({"account": account_id})
        if entries != expected.movements:
            found.append(f"account {account_id!r}: {entries} entries, replay gives {expected.movements}")
    found.extend(f"account {account_id!r} is in the read model but not in the event store" for account_id in docs)
    projected = {doc["_id"] for doc in db[TRANSFERS].find({}, {"_id": 1})}
    found.extend(f"transfer {t!r} is missing from the read model" for t in sorted(transfer_ids - projected))
    found.extend(f"transfer {t!r} is not in the event store" for t in sorted(projected - transfer_ids))
    return found
