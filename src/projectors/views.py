"""The read-model writer: one method per event type, each safe to run twice.

Account documents carry the aggregate ``version`` they reflect. A movement applies only
to the version right before it: an older version means a redelivery (ignored), a newer
one means an event went missing, which must never happen, so it fails loudly.
Entries and transfers are keyed by their identity, so re-inserting one is a no-op.
"""

from __future__ import annotations

import logging
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from projectors.messages import LedgerEvent
from queries.readmodel import ACCOUNTS, ENTRIES, PROJECTOR_STATE, TRANSFERS, WATERMARK_ID

log = logging.getLogger(__name__)


class MissingEvent(RuntimeError):
    pass


ACCOUNT_OPENED = "ledger.account.opened.v1"
ACCOUNT_DEBITED = "ledger.account.debited.v1"
ACCOUNT_CREDITED = "ledger.account.credited.v1"
TRANSFER_POSTED = "ledger.transfer.posted.v1"


class ReadModelWriter:
    """Applies a batch of events with a handful of round trips, whatever the batch size.

    The batch's accounts are read once, changed in memory event by event, and written
    back with one guarded update each (guarded by the version they were read at).
    """

    def __init__(self, db: Database[Any]) -> None:
        self.db = db

    def create_indexes(self) -> None:
        self.db[ENTRIES].create_index([("account", ASCENDING), ("version", DESCENDING)])
        try:
            self.db[PROJECTOR_STATE].insert_one({"_id": WATERMARK_ID, "position": 0})
        except DuplicateKeyError:
            pass

    def apply(self, event: LedgerEvent) -> None:
        self.apply_batch([event])

    def apply_batch(self, events: list[LedgerEvent]) -> None:
        account_ids = {
            e.data["account"] for e in events if e.type in (ACCOUNT_OPENED, ACCOUNT_DEBITED, ACCOUNT_CREDITED)
        }
        stored = (
            {doc["_id"]: doc for doc in self.db[ACCOUNTS].find({"_id": {"$in": sorted(account_ids)}})}
            if account_ids
            else {}
        )
        read_versions = {account_id: doc["version"] for account_id, doc in stored.items()}
        accounts: dict[str, dict[str, Any]] = dict(stored)
        entries: list[dict[str, Any]] = []
        transfers: list[dict[str, Any]] = []
        for event in events:
            if event.type == ACCOUNT_OPENED:
                if event.data["account"] not in accounts:
                    accounts[event.data["account"]] = self._opened(event)
            elif event.type in (ACCOUNT_DEBITED, ACCOUNT_CREDITED):
                entry = self._moved(accounts.get(event.data["account"]), event)
                if entry is not None:
                    entries.append(entry)
            elif event.type == TRANSFER_POSTED:
                transfers.append(self._transfer(event))
            else:
                log.debug("ignoring event type", extra={"type": event.type})
        # Entries before balances: a crash in between leaves entries that a redelivery
        # finds already there, and balances that it then brings up to date.
        self._insert_many(ENTRIES, entries)
        self._insert_many(TRANSFERS, transfers)
        self._insert_many(ACCOUNTS, [doc for account_id, doc in accounts.items() if account_id not in read_versions])
        updates = [
            UpdateOne({"_id": account_id, "version": version}, {"$set": _balances(accounts[account_id])})
            for account_id, version in read_versions.items()
            if accounts[account_id]["version"] != version
        ]
        if updates:
            result = self.db[ACCOUNTS].bulk_write(updates, ordered=False)
            if result.matched_count != len(updates):
                raise RuntimeError("an account read model changed under the projector; is a second one running?")

    @staticmethod
    def _opened(event: LedgerEvent) -> dict[str, Any]:
        data = event.data
        return {
            "_id": data["account"],
            "asset": data["asset"],
            "system": data["system"],
            "status": "open",
            "overdraft_limit": data["overdraft_limit"],
            "metadata": data["metadata"],
            "posted_debits": "0",
            "posted_credits": "0",
            "pending_debits": "0",
            "pending_credits": "0",
            "version": event.sequence,
            "position": event.position,
            "opened_at": event.time,
            "updated_at": event.time,
        }

    @staticmethod
    def _moved(doc: dict[str, Any] | None, event: LedgerEvent) -> dict[str, Any] | None:
        """Change ``doc`` in place; returns the entry, or None for an event already applied."""
        account_id = event.data["account"]
        if doc is None or doc["version"] < event.sequence - 1:
            have = None if doc is None else doc["version"]
            raise MissingEvent(f"account {account_id!r} is at version {have}, got {event.sequence}")
        if doc["version"] >= event.sequence:
            return None
        amount = int(event.data["amount"])
        side = "debit" if event.type == ACCOUNT_DEBITED else "credit"
        balance_field = "posted_debits" if side == "debit" else "posted_credits"
        doc[balance_field] = str(int(doc[balance_field]) + amount)
        doc.update(version=event.sequence, position=event.position, updated_at=event.time)
        return {
            "_id": f"{account_id}:{event.sequence:020d}",
            "account": account_id,
            "version": event.sequence,
            "position": event.position,
            "transfer": event.data["transfer"],
            "side": side,
            "amount": event.data["amount"],
            "balance_after": str(int(doc["posted_credits"]) - int(doc["posted_debits"])),
            "time": event.time,
        }

    @staticmethod
    def _transfer(event: LedgerEvent) -> dict[str, Any]:
        data = event.data
        return {
            "_id": data["transfer"],
            "kind": data["kind"],
            "status": "posted",
            "debit_account": data["debit_account"],
            "credit_account": data["credit_account"],
            "asset": data["asset"],
            "amount": data["amount"],
            "metadata": data["metadata"],
            "time": event.time,
            "position": event.position,
        }

    def _insert_many(self, collection: str, docs: list[dict[str, Any]]) -> None:
        """Insert, treating documents that are already there (same key) as done."""
        if not docs:
            return
        try:
            self.db[collection].insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
            if others:
                raise

    def raise_watermark(self, position: int) -> None:
        self.db[PROJECTOR_STATE].update_one(
            {"_id": WATERMARK_ID, "position": {"$lt": position}}, {"$set": {"position": position}}
        )


def _balances(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        key: doc[key]
        for key in (
            "posted_debits",
            "posted_credits",
            "pending_debits",
            "pending_credits",
            "version",
            "position",
            "updated_at",
        )
    }
